"""Task "image2image" under the training machinery of every task: DDP (2 gloo processes ==
1 process with the doubled batch), evaluate on 2 processes, and checkpoint / resume.

The launch runs every scenario of ``dist_scripts/i2i_scenarios.py`` once (module fixture);
the one-process references run here, with the same code and twice the batch size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import transferkit as tk
from transferkit.errors import ResumeError
from transferkit.training.checkpoint import LAST, load_checkpoint

SCRIPTS = Path(__file__).parent / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))
import i2i_scenarios as sc  # noqa: E402
from launch import (TORCHRUN_VARS, one_torch_thread, rank_result, same_on_both_ranks,  # noqa: E402, F401
                    torchrun_two)


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> Path:
    """Run ``dense_worker.py i2i_scenarios`` under torchrun with 2 CPU processes; the folder of results."""
    out = tmp_path_factory.mktemp("i2i_two_procs")
    torchrun_two("dense_worker.py", "i2i_scenarios", str(out))
    return out


def _max_gap(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# -- DDP: 2 processes x batch b == 1 process x batch 2b ----------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", list(sc.RUNS))
def test_two_processes_end_with_the_weights_of_one_process_with_double_batch(two_procs, name):
    r0 = same_on_both_ranks(two_procs, name)  # every rank holds the very same weights
    model, history = sc.finetune(name, 2 * sc.BATCH)
    start = sc.make_model().state_dict()
    assert _max_gap(model.state_dict(), start) > 1e-3  # training moved the weights
    for key, value in model.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, msg=key)
    assert not any("perceptual" in k for k in r0["state"])  # the loss network is not saved
    # History holds global figures (every sample of both ranks), not rank 0's.
    for mine, ref in zip(r0["history"], history.to_list(), strict=True):
        assert mine["phase"] == ref["phase"]
        for k in ("train_loss", "val_loss"):
            assert mine[k] == pytest.approx(ref[k], rel=1e-6), k


@pytest.mark.slow
def test_the_ddp_weight_comparison_can_fail(two_procs):
    """One process with the per-process batch b (not 2b) ends elsewhere, beyond tolerance."""
    r0 = rank_result(two_procs, "full_l1", 0)
    model, _ = sc.finetune("full_l1", sc.BATCH)
    assert _max_gap(r0["state"], model.state_dict()) > 1e-4


@pytest.mark.slow
def test_evaluate_on_two_processes_gives_the_one_process_report(two_procs):
    assert sc.N_VAL % 2 == 1  # rank 0 has one image more: no padding duplicates allowed
    ref = tk.evaluate(sc.make_model(seed=3), sc.pairs(sc.N_VAL, 2), batch_size=2,
                      progress=False).to_dict()
    for rank in (0, 1):
        got = rank_result(two_procs, "evaluate", rank)
        assert got["n_samples"] == sc.N_VAL
        for part in ("metrics", "baseline"):
            assert sorted(got[part]) == sorted(ref[part])
            for k, v in ref[part].items():
                assert got[part][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (part, k)


# -- checkpoint / resume -----------------------------------------------------------------------
class _StopAfter:
    """Interrupts training after ``epochs`` epochs (a crash, for resume)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer, record) -> None:
        if record["epoch"] + 1 == self.epochs:
            raise KeyboardInterrupt


_RESUME = dict(strategy="lp_ft", probe_epochs=1, epochs=2, batch_size=4, lr=1e-2,
               progress=False, seed=0, channels_last=False, image_size=16,
               loss="l1+perceptual", perceptual_weight=0.5)


def _resume_run(ckpt: Path | None = None, **extra):
    model = sc.make_model(head="unet")  # BatchNorm in the decoder: its statistics resume too
    data = sc.pairs(12, 4, size=24)  # 24 px pairs, random 16 px crops + flips: augmented
    options = {**_RESUME, **extra}
    if "perceptual" in options["loss"]:
        options["perceptual_backbone"] = sc.perceptual_net()
    history = tk.finetune(model, data, sc.pairs(5, 5, size=24), checkpoint_dir=ckpt, **options)
    return model, history


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    straight, ref = _resume_run()
    ckpt = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):  # after the probe epoch and 1 fine-tuning epoch
        _resume_run(ckpt, callbacks=[_StopAfter(2)])
    saved = load_checkpoint(ckpt / LAST)
    assert saved["epoch"] == 2 and not any("perceptual" in k for k in saved["model"])
    resumed, history = _resume_run(ckpt, resume=True)
    assert [r["phase"] for r in history] == ["probe", "finetune", "finetune"]
    assert history["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-6)
    assert history["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)
    assert _max_gap(straight.state_dict(), sc.make_model(head="unet").state_dict()) > 1e-3
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_resume_with_another_loss_is_refused(tmp_path):
    ckpt = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        _resume_run(ckpt, callbacks=[_StopAfter(1)])
    with pytest.raises(ResumeError, match=r"loss 'l1\+perceptual' -> 'l1'"):
        _resume_run(ckpt, resume=True, loss="l1", perceptual_weight=None)
    with pytest.raises(ResumeError, match=r"perceptual_weight 0.5 -> 0.1"):  # the default
        _resume_run(ckpt, resume=True, perceptual_weight=None)


def test_resume_options_name_the_default_loss():
    """loss=None is the task's default: giving it explicitly on resume is no difference."""
    from transferkit.training.config import FinetuneConfig
    from transferkit.training.resume import run_options

    implicit = run_options(FinetuneConfig(task="image2image"), 8, None)
    assert implicit == run_options(FinetuneConfig(task="image2image", loss="l1"), 8, None)
    assert implicit["loss"] == "l1" and "perceptual_weight" not in implicit
    perceptual = run_options(FinetuneConfig(task="image2image", loss="perceptual"), 8, None)
    assert perceptual["perceptual_weight"] == 0.1
    assert run_options(FinetuneConfig(), 8, None)["loss"] == "ce"
