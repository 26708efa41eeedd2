"""A linear probe of 10 epochs on a frozen backbone, with the feature cache against without it.

Both sides run ``finetune(strategy="linear_probe", augment=False)`` on a fresh copy of the
same resnet18 and the same in-memory images; one with ``cache_features=True`` (the default:
the backbone runs once per sample, the head trains on the cached features), one with
``cache_features=False`` (the backbone runs every epoch). Printed:

- ``feature_cache_speedup``: uncached time / cached time (the median over interleaved
  rounds), higher is better;
- ``feature_cache_max_weight_diff``: the largest absolute difference between the two trained
  heads' weights (the same seed and batches: it should be float32 round-off, not more).

Usage::

    python benchmarks/feature_cache.py [--repeats 3] [--samples 256] [--size 64] [--epochs 10]
                                       [--threads 1]
"""

from __future__ import annotations

import copy

import torch

from _common import (interleaved, print_results, random_images, ratio, resnet18_at,
                     start, timing_parser)

import transferkit as tk  # noqa: E402  (after _common puts the checkout on the path)


def run(repeats: int = 3, samples: int = 256, size: int = 64, epochs: int = 10,
        batch_size: int = 32) -> dict[str, float]:
    """Time cached and uncached probes in turns; return the speedup and the weight gap."""
    num_classes = 10
    template = resnet18_at(size, num_classes)
    X, y = random_images(samples, size, num_classes)
    heads: dict[str, torch.nn.Module] = {}

    def probe(name: str, cache: bool):
        def fn(model: tk.TransferModel) -> None:
            h = tk.finetune(model, (X, y), epochs=epochs, strategy="linear_probe",
                            augment=False, batch_size=batch_size, lr=1e-3, progress=False,
                            cache_features=cache, device="cpu")
            if h["cached"] != [cache] * epochs:
                raise RuntimeError(f"expected cached={cache} in every epoch, got {h['cached']}")
            heads[name] = model.head
        return fn

    sides = {"cached": probe("cached", True), "uncached": probe("uncached", False)}
    times = interleaved(sides, repeats, setup=lambda: copy.deepcopy(template))
    gap = max(float((a - b).abs().max()) for a, b in
              zip(heads["cached"].state_dict().values(), heads["uncached"].state_dict().values()))
    return {"feature_cache_speedup": ratio(times, "uncached", "cached"),
            "feature_cache_max_weight_diff": gap}


def main() -> None:
    parser = timing_parser(__doc__, repeats=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    start(args)
    print_results(run(args.repeats, args.samples, args.size, args.epochs))

if __name__ == "__main__":
    main()
