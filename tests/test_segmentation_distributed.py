"""Distributed segmentation: a real 2-process torchrun launch on the CPU (gloo) against one
process at double batch, for full fine-tuning, the cached linear probe (the dense cache of
stage maps) and the uncached one, and ``evaluate``'s pixel confusion matrix.

The launch runs every scenario of ``dist_scripts/seg_scenarios.py`` once (module fixture);
the one-process references run here, with the same code and twice the batch size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from transferkit.evaluate import evaluate

SCRIPTS = Path(__file__).parent / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))
import seg_scenarios as sc  # noqa: E402
from launch import (TORCHRUN_VARS, one_torch_thread, rank_result, same_on_both_ranks,  # noqa: E402, F401
                    torchrun_two)


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    """Run ``dense_worker.py seg_scenarios`` under torchrun with 2 CPU processes; the folder of results."""
    out = tmp_path_factory.mktemp("seg_two_procs")
    torchrun_two("dense_worker.py", "seg_scenarios", str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(sc.RUNS))
def test_two_processes_end_with_the_weights_of_one_process_with_double_batch(two_procs, name):
    r0 = same_on_both_ranks(two_procs, name)  # every rank holds the very same weights
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
    cached, plain = rank_result(two_procs, "probe_cached", 0), rank_result(two_procs, "probe_uncached", 0)
    for key, value in plain["state"].items():
        torch.testing.assert_close(cached["state"][key], value, msg=key)


@pytest.mark.slow
def test_the_ddp_weight_comparison_can_fail(two_procs):
    """One process with the per-process batch b (not 2b) ends elsewhere, beyond tolerance."""
    r0 = rank_result(two_procs, "probe_cached", 0)
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
        got = rank_result(two_procs, "evaluate", rank)
        assert got["n_samples"] == sc.N_VAL
        assert got["confusion_matrix"] == ref["confusion_matrix"]
        assert sorted(got["metrics"]) == sorted(ref["metrics"])
        for k, v in ref["metrics"].items():
            assert got["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
