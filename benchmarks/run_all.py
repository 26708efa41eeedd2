"""Run every benchmark, print its ``name: value`` lines and write ``benchmarks/results.json``.

The benchmarks: ``finetune_overhead``, ``feature_cache``, ``evaluate_speed`` and, when it is
there, ``reference_ops`` (the reference operators against ``torch.nn``). Each times its sides
in turns in this one process; see each script's docstring and ``docs/benchmarks.md``.

Usage::

    python benchmarks/run_all.py [--threads 1] [--only feature_cache ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from _common import machine, print_results, set_threads

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("finetune_overhead", "feature_cache", "evaluate_speed", "reference_ops")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (1)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    set_threads(args.threads)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"# {machine()}" + (f"; load average {load_start:.1f}" if load_start else ""))
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for name in args.only or BENCHMARKS:
        if not (HERE / f"{name}.py").exists():
            print(f"# {name}: not present, skipped")
            continue
        module = importlib.import_module(name)
        start = time.perf_counter()
        results[name] = module.run()
        seconds[name] = time.perf_counter() - start
        print(f"# {name} ({seconds[name]:.0f} s)")
        print_results(results[name])
        sys.stdout.flush()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    args.json.write_text(json.dumps({
        "machine": machine(), "threads": torch.get_num_threads(),
        "load_average_1min_at_start": load_start, "load_average_1min_at_end": load,
        "command": "python benchmarks/run_all.py" + (
            f" --threads {args.threads}" if args.threads else ""),
        "seconds": seconds, "results": results,
    }, indent=2) + "\n")
    print(f"# wrote {args.json}" + (f"; load average at the end {load:.1f}" if load else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
