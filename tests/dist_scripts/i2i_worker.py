"""Run under ``torchrun --nproc_per_node=2``: every image-to-image scenario of ``i2i_scenarios``
with the per-process batch size, then ``evaluate``, saving each rank's results to
``OUT/<name>_rank<r>.pt``.

Usage: python -m torch.distributed.run --nproc_per_node=2 i2i_worker.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import i2i_scenarios as sc
import torch

from transferkit.evaluate import evaluate


def main(out: Path) -> None:
    torch.set_num_threads(1)

    def save(name: str, obj) -> None:
        torch.save(obj, out / f"{name}_rank{torch.distributed.get_rank()}.pt")

    for name in sc.RUNS:
        model, history = sc.finetune(name, sc.BATCH)
        save(name, {"state": model.state_dict(), "history": history.to_list()})
    report = evaluate(sc.make_model(seed=3), sc.pairs(sc.N_VAL, 2), batch_size=2,
                      progress=False)
    save("evaluate", report.to_dict())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
