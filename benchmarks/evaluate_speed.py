"""evaluate against the plain ``model.eval()`` + ``torch.no_grad()`` loop: a speedup.

Both sides run the same resnet18 over the same in-memory images at the same batch size. The
images are at the crop size and the backbone's ``resize_size`` equals its crop, so the only
preprocessing is the normalisation, which the plain loop writes out too; the plain loop then
computes the accuracy. ``evaluate`` does all of that under ``torch.inference_mode`` and also
builds its whole report (loss, top-k, per-class precision/recall/F1, confusion matrix, ECE).
Printed (each the median
over interleaved rounds, higher is better):

- ``evaluate_speedup``: plain loop time / ``evaluate`` time (the whole call, report included);
- ``evaluate_pass_speedup``: plain loop time / the pass alone (``report.seconds``: batches,
  preprocessing and forward, without computing the report).

Usage::

    python benchmarks/evaluate_speed.py [--repeats 9] [--samples 256] [--size 64] [--threads 1]
"""

from __future__ import annotations


import torch

from _common import (interleaved, print_results, random_images, ratio, resnet18_at,
                     start, timing_parser)

import transferkit as tk  # noqa: E402  (after _common puts the checkout on the path)


def plain_eval(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
               batch_size: int) -> float:
    """The evaluation loop a user writes by hand; returns the accuracy."""
    mean = torch.tensor(model.backbone.data_config.mean)[:, None, None]
    std = torch.tensor(model.backbone.data_config.std)[:, None, None]
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            outs.append(model((X[i:i + batch_size] - mean) / std))
    return float((torch.cat(outs).argmax(1) == y).float().mean())


def run(repeats: int = 9, samples: int = 256, size: int = 64,
        batch_size: int = 64) -> dict[str, float]:
    """Time evaluate and the plain loop in turns; return ``{"evaluate_speedup": s}``."""
    num_classes = 10
    model = resnet18_at(size, num_classes)
    X, y = random_images(samples, size, num_classes)
    acc: dict[str, float] = {}
    pass_seconds: list[float] = []

    def ours() -> None:
        report = tk.evaluate(model, (X, y), batch_size=batch_size, progress=False, device="cpu")
        acc["evaluate"] = report.accuracy
        pass_seconds.append(report.seconds)

    def plain() -> None:
        acc["plain"] = plain_eval(model, X, y, batch_size)

    times = interleaved({"evaluate": ours, "plain": plain}, repeats)
    if abs(acc["evaluate"] - acc["plain"]) > 1e-6:
        raise RuntimeError(f"evaluate and the plain loop disagree: {acc}")
    times["pass"] = pass_seconds[-repeats:]  # the warm-up round's is dropped
    out = {"evaluate_speedup": ratio(times, "plain", "evaluate"),
           "evaluate_pass_speedup": ratio(times, "plain", "pass")}
    return out


def main() -> None:
    parser = timing_parser(__doc__, repeats=9)
    args = parser.parse_args()
    start(args)
    print_results(run(args.repeats, args.samples, args.size))

if __name__ == "__main__":
    main()
