"""finetune(mixup=..., cutmix=...): soft targets summing to 1, off by default, no cache."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk

from _synthetic import patterns, tiny_model

_OPTS = dict(epochs=1, batch_size=6, augment=False, channels_last=False)


class _Targets(tk.Callback):
    """Wraps the trainer's loss to record the targets it is given."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_train_start(self, trainer) -> None:
        inner = trainer.criterion

        def spy(out, y):
            self.seen.append(y.detach().clone())
            return inner(out, y)
        trainer.criterion = spy


@pytest.mark.parametrize("opts", [dict(mixup=0.2), dict(cutmix=1.0),
                                  dict(mixup=0.2, cutmix=1.0)], ids=["mixup", "cutmix", "both"])
def test_targets_are_soft_and_sum_to_one(opts, capsys) -> None:
    X, y = patterns(18, size=16)
    spy = _Targets()
    torch.manual_seed(0)
    tk.finetune(tiny_model(seed=0), (X, y), strategy="linear_probe", callbacks=[spy],
                progress=True, seed=1, **opts, **_OPTS)
    assert "feature cache off: mixup/cutmix" in capsys.readouterr().err
    assert spy.seen
    for t in spy.seen:
        assert t.is_floating_point() and t.shape == (6, 3)
        torch.testing.assert_close(t.sum(1), torch.ones(6))
        assert (t >= 0).all()
    mixed = torch.cat(spy.seen)
    assert ((mixed > 0) & (mixed < 1)).any()  # really soft, not one-hot


def test_off_by_default_hard_labels_and_cache_on(capsys) -> None:
    X, y = patterns(18, size=16)
    spy = _Targets()
    tk.finetune(tiny_model(seed=0), (X, y), strategy="linear_probe", callbacks=[spy],
                progress=True, **_OPTS)
    assert "feature cache off" not in capsys.readouterr().err
    assert all(not t.is_floating_point() and t.ndim == 1 for t in spy.seen)


@pytest.mark.parametrize("opts, match", [
    (dict(mixup=0.0), "mixup must be None or a Beta alpha > 0"),
    (dict(cutmix=True), "cutmix must be None or a Beta alpha > 0"),
    (dict(mixup=0.2, task="multilabel"), "need task='multiclass'"),
])
def test_bad_mixing_options_refused(opts, match) -> None:
    X, y = patterns(6, size=16)
    with pytest.raises(ValueError, match=match):
        tk.finetune(tiny_model(seed=0), (X, y), progress=False, **{**_OPTS, **opts})
