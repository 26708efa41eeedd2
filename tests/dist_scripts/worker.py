"""Run under ``torchrun --nproc_per_node=2``: every scenario of ``dist_scenarios``, with the
per-process batch size, saving each rank's results to ``OUT/<name>_rank<r>.pt``.

Usage: python -m torch.distributed.run --nproc_per_node=2 worker.py OUT
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import dist_scenarios as sc
import torch

from transferkit.evaluate import evaluate


def main(out: Path) -> None:
    torch.set_num_threads(1)
    def save(name: str, obj) -> None:
        torch.save(obj, out / f"{name}_rank{torch.distributed.get_rank()}.pt")

    for name in sc.RUNS:
        model, history = sc.finetune(name, sc.BATCH)
        save(name, {"state": model.state_dict(), "history": history.to_list()})

    # Interrupted after 2 of 3 epochs; rank 0 writes the checkpoint; then a resume on 2 ranks.
    ck = out / "ck"
    try:
        sc.finetune("full", sc.BATCH, epochs=3, checkpoint_dir=ck, callbacks=[sc.StopAfter(2)])
    except KeyboardInterrupt:
        pass
    torch.distributed.barrier()
    if torch.distributed.get_rank() == 0:
        shutil.copytree(ck, out / "ck_resumed")
    torch.distributed.barrier()
    model, history = sc.finetune("full", sc.BATCH, epochs=3, checkpoint_dir=out / "ck_resumed",
                                 resume=True)
    save("resumed", {"state": model.state_dict(), "history": history.to_list()})

    report = evaluate(sc.make_model(seed=3), sc.data(sc.N_VAL, 2), batch_size=4, progress=False)
    save("evaluate", report.to_dict())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sc.finetune("full", sc.BATCH, epochs=1, sync_batchnorm=True)
    save("sync_bn", [str(w.message) for w in caught])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
