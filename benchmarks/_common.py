"""Timing helpers shared by the benchmark scripts: interleaved repeats, medians, the machine.

A busy machine makes absolute timings meaningless, so every benchmark times its two sides in
turns (A, B, B, A, A, B, ...) in one process and reports the median over rounds of the
ratio of the two runs of a round: a slow moment hits both sides of that round alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

__all__ = ["interleaved", "median", "ratio", "machine", "print_results", "set_threads",
           "threads", "DEFAULT_THREADS", "resnet18_at", "random_images", "timing_parser",
           "start"]

# One intra-op thread by default: on a machine shared with other busy processes, a second
# OpenMP thread spends its time waiting at barriers for a preempted sibling, which makes the
# timings far noisier than the differences we measure. Pass --threads to change it.
DEFAULT_THREADS = 1


def threads() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_threads(n: int | None) -> None:
    """Use ``n`` intra-op threads (``None``: :data:`DEFAULT_THREADS`)."""
    torch.set_num_threads(DEFAULT_THREADS if n is None else n)


def interleaved(sides: Mapping[str, Callable[[], Any]], repeats: int, *,
                setup: Callable[[], Any] | None = None, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Seconds of each side over ``repeats`` rounds, the sides taking turns in every round.

    Args:
        sides: ``{name: fn}``; each ``fn()`` is one timed run. The order alternates from one
            round to the next (A, B then B, A) so that neither side always runs first.
        repeats: timed rounds.
        setup: called (untimed) before every run, e.g. to copy a fresh model; its result is
            passed to ``fn``, which then takes one argument.
        warmup: untimed rounds first (allocator, thread pools, kernel selection).

    Returns:
        ``{name: [seconds of each round]}``.
    """
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            args = () if setup is None else (setup(),)
            start = time.perf_counter()
            sides[name](*args)
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(times: Mapping[str, list[float]], num: str, den: str) -> float:
    """The median over rounds of ``times[num][r] / times[den][r]``.

    Each round's two runs are next to each other in time, so their ratio cancels the load
    that other processes put on the machine at that moment better than a ratio of medians.
    """
    return median([a / b for a, b in zip(times[num], times[den])])


def machine() -> str:
    """One line naming the machine: CPU, cores usable, torch build."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {threads()} CPU cores usable, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads, {platform.system()}")


def print_results(results: Mapping[str, float]) -> None:
    """One ``name: value`` line per figure."""
    for name, value in results.items():
        small = value != 0 and abs(value) < 0.001
        text = (f"{value:.2e}" if small else f"{value:.1f}" if abs(value) >= 100
                else f"{value:.4g}")
        print(f"{name}: {text}")


# -- what the resnet18 benchmarks share ----------------------------------------------------
def resnet18_at(size: int, num_classes: int) -> Any:
    """A randomly initialised resnet18 TransferModel (seed 0) whose preprocessing is only the
    normalisation at ``size`` pixels: images already at the crop size are not resized."""
    import transferkit as tk

    torch.manual_seed(0)
    backbone = tk.load_backbone("resnet18")
    backbone.data_config = dataclasses.replace(
        backbone.data_config, input_size=(3, size, size), resize_size=size)
    return tk.replace_head(backbone, num_classes=num_classes)


def random_images(samples: int, size: int, num_classes: int) -> tuple[torch.Tensor,
                                                                     torch.Tensor]:
    """``(X, y)``: ``samples`` uniform [0, 1) RGB images and random labels, seed 0."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(samples, 3, size, size, generator=g)
    y = torch.randint(0, num_classes, (samples,), generator=g)
    return X, y


def timing_parser(doc: str, repeats: int) -> argparse.ArgumentParser:
    """The options every timing benchmark takes: --repeats, --samples, --size, --threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (1)")
    return parser


def start(args: argparse.Namespace) -> None:
    """Set the threads from ``args`` and print the machine line."""
    set_threads(args.threads)
    print(f"# {machine()}")
