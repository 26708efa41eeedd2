"""finetune(ema=...) and finetune(swa=...): the final model is the averaged one."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk
from transferkit.training.averaging import ema_decay

from _synthetic import patterns, tiny_model

_OPTS = dict(strategy="full", epochs=3, batch_size=4, lr=1e-2, augment=False, progress=False,
             channels_last=False, cache_features=False)


class _Record(tk.Callback):
    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.epochs: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, trainer) -> None:
        self.steps.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    def on_epoch_end(self, trainer, record) -> None:
        self.epochs.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})


def _hand_ema(steps, decay, warmup):
    ema = {k: v.clone() for k, v in steps[0].items()}  # step 1: a copy
    for k, state in enumerate(steps[1:], start=2):
        d = 1 - (1 + (k - 1)) ** (-2 / 3) if warmup else decay
        d = min(d, decay)
        for name, w in state.items():
            ema[name] = ema[name] * d + w * (1 - d) if w.is_floating_point() else w.clone()
    return ema


@pytest.mark.parametrize("warmup", [False, True], ids=["plain", "warmup"])
def test_ema_equals_a_hand_written_ema_of_the_weights(warmup) -> None:
    X, y = patterns(20, size=16)
    model = tiny_model(seed=0)
    rec = _Record()
    hist = tk.finetune(model, (X, y), (X[:6], y[:6]), ema=0.9, ema_warmup=warmup,
                       grad_accum_steps=2, callbacks=[rec], **_OPTS)
    assert len(rec.steps) == 3 * 3  # 5 batches per epoch, a step every 2 (and the last)
    want = _hand_ema(rec.steps, 0.9, warmup)
    got = model.state_dict()
    for name, w in want.items():
        torch.testing.assert_close(got[name], w, msg=name)
    # the EMA is not the last raw weights, and its validation figures are in the History
    assert not torch.equal(got["head.fc.weight" if "head.fc.weight" in got else
                               next(k for k in got if k.startswith("head"))],
                           rec.steps[-1][next(k for k in got if k.startswith("head"))])
    assert hist.averaged["method"] == "ema" and hist.averaged["steps"] == 9
    assert hist.averaged["val_loss"] == pytest.approx(
        tk.evaluate(model, (X[:6], y[:6]), progress=False, channels_last=False).loss, rel=1e-4)


def test_ema_decay_follows_timm_model_ema_v3() -> None:
    timm_ema = pytest.importorskip("timm.utils.model_ema")
    m = timm_ema.ModelEmaV3(torch.nn.Linear(1, 1), decay=0.999, use_warmup=True)
    plain = timm_ema.ModelEmaV3(torch.nn.Linear(1, 1), decay=0.999)
    for k in (1, 2, 3, 10, 1000, 10**6):
        assert ema_decay(0.999, k, True) == pytest.approx(m.get_decay(k))
        assert ema_decay(0.999, k, False) == pytest.approx(plain.get_decay(k))


def test_swa_is_the_equal_average_of_the_last_epochs() -> None:
    X, y = patterns(20, size=16)
    model = tiny_model(seed=0)
    rec = _Record()
    hist = tk.finetune(model, (X, y), (X[:6], y[:6]), swa=2, callbacks=[rec], **_OPTS)
    got = model.state_dict()
    for name, p in model.named_parameters():
        want = (rec.epochs[1][name] + rec.epochs[2][name]) / 2
        torch.testing.assert_close(p.detach(), want, msg=name)
    assert hist.averaged["method"] == "swa" and hist.averaged["epochs"] == 2
    # BatchNorm trained in batch-statistics mode: its statistics were recomputed
    bn = next(k for k in got if k.endswith("running_mean"))
    assert not torch.equal(got[bn], rec.epochs[2][bn])


@pytest.mark.parametrize("opts, match", [
    (dict(ema=1.0), "ema must be None or a decay in"),
    (dict(ema=True), "ema must be None or a decay in"),
    (dict(ema_warmup=True), "ema_warmup=True needs ema"),
    (dict(swa=0), "swa must be False, True"),
    (dict(ema=0.99, swa=True), "choose one"),
    (dict(ema=0.99, early_stopping="val_loss"), "early_stopping"),
])
def test_bad_averaging_options_refused_before_any_work(opts, match) -> None:
    X, y = patterns(6, size=16)
    model = tiny_model(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        tk.finetune(model, (X, y), **{**_OPTS, **opts})
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
