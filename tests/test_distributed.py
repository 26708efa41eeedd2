"""Distributed finetune and evaluate: real 2-process torchrun launches on the CPU (gloo),
compared with one process; and the pure helpers of ``transferkit.distributed``.

The launch runs every scenario of ``dist_scripts/dist_scenarios.py`` once (module fixture);
the one-process references run here, with the same code and twice the batch size.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import transferkit as tk
from transferkit.training.checkpoint import LAST, load_checkpoint
from transferkit.distributed import (
    BACKEND_ENV,
    DistContext,
    _local_device,
    interleave,
    resolve_backend,
    shard_positions,
)
from transferkit.evaluate import evaluate

SCRIPTS = Path(__file__).parent / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))
import dist_scenarios as sc
from launch import (TORCHRUN_VARS, one_torch_thread, rank_result, same_on_both_ranks,  # noqa: E402, F401
                    torchrun_two)


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    """Run ``worker.py`` under torchrun with 2 CPU processes; the folder of results."""
    out = tmp_path_factory.mktemp("two_procs")
    torchrun_two("worker.py", str(out))
    return out


# -- 2 processes x batch b == 1 process x batch 2b ---------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", list(sc.RUNS))
def test_two_processes_end_with_the_weights_of_one_process_with_double_batch(two_procs, name):
    r0 = same_on_both_ranks(two_procs, name)  # every rank holds the very same weights
    model, history = sc.finetune(name, 2 * sc.BATCH)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, msg=key)
    # History holds global figures (every sample of both ranks), not rank 0's.
    for mine, ref in zip(r0["history"], history.to_list(), strict=True):
        assert mine["phase"] == ref["phase"]
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert mine[k] == pytest.approx(ref[k], rel=1e-6), k
    r1 = rank_result(two_procs, name, 1)
    assert r1["history"] == [dict(r, seconds=r1r["seconds"],
                                  images_per_second=r1r["images_per_second"])
                             for r, r1r in zip(r0["history"], r1["history"])]


@pytest.mark.slow
def test_cached_probe_on_two_processes_equals_the_uncached_one(two_procs):
    """Cached 2-process == uncached 2-process (== 1-process, the test above): each rank
    caches its shard, the shards are joined, and epochs run the sampler's global order."""
    cached, plain = rank_result(two_procs, "probe_cached", 0), rank_result(two_procs, "probe_uncached", 0)
    assert [r["cached"] for r in cached["history"]] == [True] * 3
    assert [r["cached"] for r in plain["history"]] == [False] * 3
    for key, value in plain["state"].items():
        torch.testing.assert_close(cached["state"][key], value, msg=key)


@pytest.mark.slow
def test_the_weight_comparison_can_fail(two_procs):
    """One process with the per-process batch b (not 2b) ends elsewhere, far beyond tolerance."""
    r0 = rank_result(two_procs, "full", 0)
    model, _ = sc.finetune("full", sc.BATCH)
    gap = max((r0["state"][k] - v).abs().max().item() for k, v in model.state_dict().items())
    assert gap > 1e-3


# -- evaluate ----------------------------------------------------------------------------------
def _assert_same_report(got, ref, where="report"):
    """Equal structure and values; floats to float32 rounding (shards batch differently)."""
    if isinstance(ref, dict):
        assert sorted(got) == sorted(ref), where
        for k in ref:
            if k not in ("seconds", "images_per_second"):
                _assert_same_report(got[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, list):
        assert len(got) == len(ref), where
        for i, (a, b) in enumerate(zip(got, ref)):
            _assert_same_report(a, b, f"{where}[{i}]")
    elif isinstance(ref, float):
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-7), where
    else:
        assert got == ref, where


@pytest.mark.slow
def test_evaluate_on_two_processes_gives_the_one_process_report(two_procs):
    assert sc.N_VAL % 2 == 1  # rank 0 has one sample more: no padding duplicates allowed
    ref = evaluate(sc.make_model(seed=3), sc.data(sc.N_VAL, 2), batch_size=4, progress=False)
    for rank in (0, 1):
        got = rank_result(two_procs, "evaluate", rank)
        assert got["n_samples"] == sc.N_VAL
        _assert_same_report(got, ref.to_dict())


# -- checkpoints -------------------------------------------------------------------------------
def _copy_checkpoint(two_procs: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ck"
    shutil.copytree(two_procs / "ck", dst)
    return dst


@pytest.mark.slow
def test_checkpoint_of_two_processes_is_written_once_with_every_rank_rng(two_procs):
    ck = load_checkpoint(two_procs / "ck" / LAST)
    assert ck["world"] == 2 and len(ck["rng_ranks"]) == 2
    assert ck["epoch"] == 2 and ck["phase_epoch"] == 2 and not ck["phase_done"]
    assert sorted(p.name for p in (two_procs / "ck").iterdir()) == [LAST]


@pytest.mark.slow
def test_checkpoint_of_two_processes_resumes_in_one_process(two_procs, tmp_path):
    ck = _copy_checkpoint(two_procs, tmp_path)
    resumed, history = sc.finetune("full", 2 * sc.BATCH, epochs=3, checkpoint_dir=ck,
                                   resume=True)
    straight, ref = sc.finetune("full", 2 * sc.BATCH, epochs=3)
    assert len(history) == 3
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
    assert history["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-6)


@pytest.mark.slow
def test_resume_with_other_steps_per_epoch_keeps_the_schedule(two_procs, tmp_path):
    """2 processes x batch 4 took 4 steps per epoch; 1 process x batch 4 takes 8. The cosine
    schedule must still end at 0 after epoch 3 (without re-seeking it would stop at 1/4 lr)."""
    ck = _copy_checkpoint(two_procs, tmp_path)
    _, history = sc.finetune("full", sc.BATCH, epochs=3, checkpoint_dir=ck, resume=True)
    assert len(history) == 3
    assert history[-1]["lr"] == pytest.approx([0.0] * len(history[-1]["lr"]), abs=1e-9)
    assert history[1]["lr"] == pytest.approx(
        [sc.COMMON["lr"] * 0.5 * (1 + math.cos(math.pi * 2 / 3))] * len(history[1]["lr"]))


@pytest.mark.slow
def test_checkpoint_of_two_processes_resumes_on_two_processes(two_procs):
    r0 = same_on_both_ranks(two_procs, "resumed")
    straight, _ = sc.finetune("full", 2 * sc.BATCH, epochs=3)
    assert len(r0["history"]) == 3
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, msg=key)


@pytest.mark.slow
def test_sync_batchnorm_on_gloo_warns_once_on_rank_0(two_procs):
    assert any("sync_batchnorm=True is ignored with the 'gloo' backend" in m
               for m in rank_result(two_procs, "sync_bn", 0))
    assert rank_result(two_procs, "sync_bn", 1) == []


# -- one process: nothing is initialised -------------------------------------------------------
@pytest.mark.parametrize("world", [None, "1"])
def test_single_process_initialises_no_process_group(monkeypatch, world):
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    if world is not None:
        monkeypatch.setenv("WORLD_SIZE", world)
    ctx = DistContext.from_env(torch.device("cpu"))
    assert (ctx.rank, ctx.world, ctx.is_main, ctx.backend) == (0, 1, True, None)
    assert not torch.distributed.is_initialized()
    module = torch.nn.Linear(2, 2)
    assert ctx.wrap(module) is module
    assert ctx.sum([1.0, 2.5]) == [1.0, 2.5]
    assert ctx.unshard(torch.arange(3)).tolist() == [0, 1, 2]


def test_backend_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert resolve_backend(None, torch.device("cpu")) == "gloo"
    assert resolve_backend(None, torch.device("cuda")) == "nccl"
    monkeypatch.setenv(BACKEND_ENV, "GLOO")
    assert resolve_backend(None, torch.device("cuda")) == "gloo"
    assert resolve_backend("nccl", torch.device("cuda")) == "nccl"  # the option wins


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "glooo")
    with pytest.raises(ValueError, match=r"Unknown torch.distributed backend 'glooo'.*'gloo'"):
        resolve_backend(None, torch.device("cpu"))


def test_nccl_on_the_cpu_is_refused():
    with pytest.raises(ValueError, match="nccl backend needs CUDA devices but this run is on cpu"):
        resolve_backend("nccl", torch.device("cpu"))


def test_more_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _local_device(torch.device("cuda"), 0) == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK is 1 but this machine has 1 CUDA"):
        _local_device(torch.device("cuda"), 1)


def test_dist_backend_option_must_be_a_name():
    with pytest.raises(TypeError, match="dist_backend must be None or a backend name"):
        tk.finetune(sc.make_model(), sc.data(4, 0), dist_backend=2, progress=False)


# -- the sharding helpers ----------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), world=st.integers(1, 5), seed=st.integers(0, 10))
def test_shard_positions_cover_every_sample_with_equal_step_counts(n, world, seed):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    seen = []
    for rank in range(world):
        pos = shard_positions(order, rank, world)
        shard = list(range(rank, n, world))
        assert len(pos) == (math.ceil(n / world) if shard else 0)
        samples = [shard[p] for p in pos]
        assert samples[:len(shard)] == [i for i in order if i % world == rank]
        seen += samples[:len(shard)]
    assert sorted(seen) == list(range(n))
    assert shard_positions(order, 0, 1) == order


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), world=st.integers(1, 5), width=st.integers(0, 3))
def test_interleave_inverts_rank_sharding(n, world, width):
    x = torch.arange(n * max(width, 1)).reshape(n, -1) if width else torch.arange(n)
    torch.testing.assert_close(interleave([x[r::world] for r in range(world)]), x)
