"""Images per second of a 2-process torchrun run against a 1-process run on the same machine.

Three launches under ``torchrun`` on the CPU, taking turns ``--repeats`` times (a busy moment
hits all alike; medians are reported):

- 2 processes (gloo), ``--threads / 2`` intra-op threads each;
- 1 process, ``--threads`` threads (the same cores as the 2 processes);
- 1 process, ``--threads / 2`` threads (one process's share: 2.0 would be perfect scaling).

Each launch runs every case on ResNet-18 (random weights) at 64 px. The global batch is the
same (the 2-process run has half the batch per process), so all do the same optimiser steps on
the same samples. Figures: ``finetune_full``: mean ``images_per_second`` of the history
(global: samples of every rank / epoch seconds) over the epochs after the first;
``finetune_probe_cached``: ``epochs x samples`` over the whole ``finetune`` call, whose cost
is building the feature cache (each process caches its shard); ``evaluate``: the report's
``images_per_second`` after a warm-up pass. One ``name: ratio`` line per case and baseline,
2-process / 1-process images per second (above 1: faster); absolute figures go to stderr.

Usage::

    python benchmarks/distributed_throughput.py [--threads 2] [--repeats 3] [--samples 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("finetune_full", "finetune_probe_cached", "evaluate")
GLOBAL_BATCH = 32


def _worker(samples: int, epochs: int, out: str) -> None:
    import torch

    import transferkit as tk
    from transferkit.evaluate import evaluate

    world = int(os.environ.get("WORLD_SIZE", "1"))
    g = torch.Generator().manual_seed(0)
    data = torch.rand(samples, 3, 64, 64, generator=g), torch.arange(samples) % 10
    figures = {}
    for case in CASES:
        backbone = tk.load_backbone("resnet18")  # random weights: no download
        backbone.data_config = backbone.data_config.with_image_size(64)
        torch.manual_seed(0)
        model = tk.replace_head(backbone, num_classes=10)
        if case == "evaluate":
            evaluate(model, data, batch_size=GLOBAL_BATCH, progress=False)  # warm-up
            report = evaluate(model, data, batch_size=GLOBAL_BATCH, progress=False)
            figures[case] = report.images_per_second
            continue
        full = case == "finetune_full"
        start = time.perf_counter()
        history = tk.finetune(model, data, strategy="full" if full else "linear_probe",
                              epochs=epochs, augment=False, batch_size=GLOBAL_BATCH // world,
                              optimizer="sgd", progress=False, device="cpu")
        wall = time.perf_counter() - start
        figures[case] = (statistics.mean(history["images_per_second"][1:]) if full
                         else epochs * samples / wall)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps(figures))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nproc: int, threads: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TRANSFERKIT_OFFLINE="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
               __file__, "--worker", "--samples", str(args.samples),
               "--epochs", str(args.epochs), "--out", str(out)]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="cores used by each launch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.samples, args.epochs, args.out)
        return
    half = max(1, args.threads // 2)
    runs = {"2proc": (2, half), f"1proc_{args.threads}threads": (1, args.threads),
            f"1proc_{half}threads": (1, half)}
    got: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (nproc, threads) in runs.items():  # taking turns
            got[name].append(_launch(nproc, threads, args))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load:.1f}, {args.repeats} repeats, medians", file=sys.stderr)
    for case in CASES:
        med = {name: statistics.median(r[case] for r in rs) for name, rs in got.items()}
        print("  " + case + ": " + ", ".join(f"{n} {v:.1f} img/s" for n, v in med.items()),
              file=sys.stderr)
        for name in list(runs)[1:]:
            print(f"{case}.vs_{name}: {med['2proc'] / med[name]:.2f}", flush=True)


if __name__ == "__main__":
    main()
