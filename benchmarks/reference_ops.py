"""Time each transferkit.reference op against its torch.nn twin on VGG16's layer shapes.

Every op runs forward (no autograd) on the shapes it meets in VGG16 at a small batch: the
13 convolutions (3x3, padding 1), the 5 max-poolings (2x2, stride 2; the average-pooling
runs on the same shapes) and the 3 linear layers of the classifier. Reference and torch
take turns in one process, each layer is timed ``repeats`` times, the medians are summed over
the layers, and one line per op prints the ratio reference / torch (lower is faster).

Usage::

    python benchmarks/reference_ops.py [--repeats 5] [--batch 8] [--size 112] [--json PATH] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from transferkit import reference as R  # noqa: E402

# torchvision's VGG16 ("D"): channel counts, "M" = 2x2 max-pool.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG16_CLASSIFIER = [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]

Case = tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]  # (reference, torch)
Layers = list[tuple[str, Case]]  # (label, case) per layer


def _vgg16_shapes(size: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """``(C_in, C_out, size)`` of each conv and ``(channels, size)`` of each pooling input."""
    convs, pools, channels = [], [], 3
    for item in VGG16:
        if item == "M":
            pools.append((channels, size))
            size //= 2
        else:
            convs.append((channels, item, size))
            channels = item
    return convs, pools


def _conv_layers(op: Callable[..., torch.Tensor], batch: int, size: int) -> Layers:
    layers = []
    for c_in, c_out, px in _vgg16_shapes(size)[0]:
        x = torch.randn(batch, c_in, px, px)
        w, b = torch.randn(c_out, c_in, 3, 3) / (3 * c_in**0.5), torch.randn(c_out)
        case = (
            lambda x=x, w=w, b=b: op(x, w, b, padding=1),
            lambda x=x, w=w, b=b: F.conv2d(x, w, b, padding=1),
        )
        layers.append((f"{c_in}->{c_out} {px}px", case))
    return layers


def _pool_layers(
    op: Callable[..., torch.Tensor], twin: Callable[..., torch.Tensor], batch: int, size: int
) -> Layers:
    layers = []
    for channels, px in _vgg16_shapes(size)[1]:
        x = torch.randn(batch, channels, px, px)
        layers.append((f"{channels}x{px}px", (lambda x=x: op(x, 2), lambda x=x: twin(x, 2))))
    return layers


def _linear_layers(batch: int, size: int) -> Layers:
    layers = []
    for n_in, n_out in VGG16_CLASSIFIER:
        x, w, b = torch.randn(batch, n_in), torch.randn(n_out, n_in) / n_in**0.5, torch.randn(n_out)
        case = (lambda x=x, w=w, b=b: R.linear(x, w, b), lambda x=x, w=w, b=b: F.linear(x, w, b))
        layers.append((f"{n_in}->{n_out}", case))
    return layers


OPS: dict[str, Callable[[int, int], Layers]] = {
    "conv2d": lambda batch, size: _conv_layers(R.conv2d, batch, size),
    "conv2d_loops": lambda batch, size: _conv_layers(R.conv2d_loops, batch, size),
    "max_pool2d": lambda batch, size: _pool_layers(R.max_pool2d, F.max_pool2d, batch, size),
    "avg_pool2d": lambda batch, size: _pool_layers(R.avg_pool2d, F.avg_pool2d, batch, size),
    "linear": _linear_layers,
}


def _median_times(case: Case, repeats: int) -> tuple[float, float]:
    """Median seconds of the reference and of torch, timed in turns after one warm-up each."""
    times: tuple[list[float], list[float]] = ([], [])
    for fn in case:
        fn()
    for _ in range(repeats):
        for fn, record in zip(case, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def run(
    repeats: int = 5,
    batch: int = 8,
    size: int = 112,
    verbose: bool = False,
    ops: list[str] | None = None,
) -> dict[str, float]:
    """Time every op on VGG16's layers and return ``{op name: reference time / torch time}``.

    Args:
        repeats: timed calls per layer and implementation (the median is kept).
        batch: images per batch.
        size: input image height and width.
        verbose: also print each layer's medians (milliseconds) to stderr.
        ops: only these ops (default: all).

    Returns:
        The ratio of summed medians per op, e.g. ``{"conv2d": 1.4, ...}``.

    Example:
        >>> ratios = run(repeats=1, batch=1, size=32)
    """
    unknown = sorted(set(ops or ()) - set(OPS))
    if unknown:
        raise ValueError(f"run: unknown ops {unknown}; choose from {sorted(OPS)}.")
    torch.manual_seed(0)
    ratios = {}
    with torch.no_grad():
        for name in ops or OPS:
            layers = OPS[name](batch, size)
            ours_total = theirs_total = 0.0
            for label, case in layers:
                ours, theirs = _median_times(case, repeats)
                ours_total, theirs_total = ours_total + ours, theirs_total + theirs
                if verbose:
                    print(
                        f"  {name} {label}: reference {ours * 1e3:.1f} ms, torch {theirs * 1e3:.1f} ms "
                        f"({ours / theirs:.2f}x)",
                        file=sys.stderr,
                    )
            ratios[name] = ours_total / theirs_total
            if verbose:
                print(
                    f"  {name} total: reference {ours_total * 1e3:.1f} ms, torch {theirs_total * 1e3:.1f} ms",
                    file=sys.stderr,
                )
    return ratios


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print ``name: ratio`` lines, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per layer (median kept)"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=112, help="input height and width in pixels")
    parser.add_argument("--json", type=Path, help="also write the ratios to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="print per-layer times to stderr")
    parser.add_argument("--ops", nargs="+", choices=list(OPS), help="only these ops (default: all)")
    args = parser.parse_args(argv)
    ratios = run(args.repeats, args.batch, args.size, args.verbose, args.ops)
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(ratios, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
