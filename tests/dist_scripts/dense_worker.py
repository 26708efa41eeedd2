"""Run under ``torchrun --nproc_per_node=2``: every scenario of a dense-task scenarios module
(``seg_scenarios`` or ``i2i_scenarios``) with the per-process batch size, then ``evaluate`` on
its ``eval_data()``, saving each rank's results to ``OUT/<name>_rank<r>.pt``.

Usage: python -m torch.distributed.run --nproc_per_node=2 dense_worker.py MODULE OUT
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

from transferkit.evaluate import evaluate


def main(module: str, out: Path) -> None:
    torch.set_num_threads(1)
    sc = importlib.import_module(module)

    def save(name: str, obj) -> None:
        torch.save(obj, out / f"{name}_rank{torch.distributed.get_rank()}.pt")

    for name in sc.RUNS:
        model, history = sc.finetune(name, sc.BATCH)
        save(name, {"state": model.state_dict(), "history": history.to_list()})
    report = evaluate(sc.make_model(seed=3), sc.eval_data(), batch_size=2, progress=False)
    save("evaluate", report.to_dict())


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
