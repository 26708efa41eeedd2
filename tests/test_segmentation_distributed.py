"""Distributed segmentation: a real 2-process torchrun launch on the CPU (gloo) against one
process at double batch, for full fine-tuning, the cached linear probe (the dense cache of
stage maps) and the uncached one, and ``evaluate``'s pixel confusion matrix.

The launch runs every scenario of ``dist_scripts/seg_scenarios.py`` once (module fixture);
the one-process references run here, with the same code and twice the batch size.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transferkit.distributed import BACKEND_ENV
from transferkit.evaluate import evaluate

SCRIPTS = Path(__file__).parent / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))
import seg_scenarios as sc  # noqa: E402

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                  "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread, as each torchrun worker has (OMP_NUM_THREADS=1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    """Run ``seg_worker.py`` under torchrun with 2 CPU processes; the folder of results."""
    out = tmp_path_factory.mktemp("seg_two_procs")
    env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", TRANSFERKIT_OFFLINE="1")
    env.pop(BACKEND_ENV, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           str(SCRIPTS / "seg_worker.py"), str(out)]
    proc = subprocess.run(cmd, cwd=SCRIPTS, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, (
        f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return out


def _result(out: Path, name: str, rank: int):
    return torch.load(out / f"{name}_rank{rank}.pt", weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(sc.RUNS))
def test_two_processes_end_with_the_weights_of_one_process_with_double_batch(two_procs, name):
    r0, r1 = _result(two_procs, name, 0), _result(two_procs, name, 1)
    for key, value in r0["state"].items():  # every rank holds the very same weights
        torch.testing.assert_close(r1["state"][key], value, rtol=0, atol=0, msg=key)
    model, history = sc.finetune(name, 2 * sc.BATCH)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, msg=key)
    cached = name == "probe_cached"
    assert [r["cached"] for r in r0["history"]] == [cached] * len(r0["history"])
    # History holds global figures (every pixel of both ranks), not rank 0's.
    for mine, ref in zip(r0["history"], history.to_list(), strict=True):
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert mine[k] == pytest.approx(ref[k], rel=1e-5), k


@pytest.mark.slow
def test_cached_probe_on_two_processes_equals_the_uncached_one(two_procs):
    cached, plain = _result(two_procs, "probe_cached", 0), _result(two_procs, "probe_uncached", 0)
    for key, value in plain["state"].items():
        torch.testing.assert_close(cached["state"][key], value, msg=key)


@pytest.mark.slow
def test_the_ddp_weight_comparison_can_fail(two_procs):
    """One process with the per-process batch b (not 2b) ends elsewhere, beyond tolerance."""
    r0 = _result(two_procs, "probe_cached", 0)
    model, _ = sc.finetune("probe_cached", sc.BATCH)
    gap = max((r0["state"][k] - v).abs().max().item() for k, v in model.state_dict().items())
    assert gap > 1e-4


@pytest.mark.slow
def test_evaluate_on_two_processes_gives_the_one_process_report(two_procs):
    """The pixel confusion matrix is summed across ranks: the one-process report."""
    assert sc.N_VAL % 2 == 1  # rank 0 has one image more: no padding duplicates allowed
    ref = evaluate(sc.make_model(seed=3), sc.data(sc.N_VAL, 2), batch_size=4,
                   progress=False).to_dict()
    for rank in (0, 1):
        got = _result(two_procs, "evaluate", rank)
        assert got["n_samples"] == sc.N_VAL
        assert got["confusion_matrix"] == ref["confusion_matrix"]
        assert sorted(got["metrics"]) == sorted(ref["metrics"])
        for k, v in ref["metrics"].items():
            assert got["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
