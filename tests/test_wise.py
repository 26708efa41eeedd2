"""WiSE-FT: tk.interpolate_weights and finetune(strategy='lp_ft', wise_alpha=...)."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk

from _synthetic import patterns, tiny_model

_OPTS = dict(strategy="lp_ft", probe_epochs=2, epochs=2, batch_size=8, lr=2e-2, augment=False,
             progress=False, channels_last=False, deterministic=True, seed=0)


class _Probe(tk.Callback):
    def on_epoch_end(self, trainer, record) -> None:
        if record["phase"] == "probe":
            self.state = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_interpolate_weights_endpoints_are_exact_and_midpoint_is_the_mean() -> None:
    a, b = tiny_model(seed=0), tiny_model(seed=1)
    next(m for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.add_(1.0)
    for alpha, ref in ((0.0, a), (1.0, b)):
        assert _same(tk.interpolate_weights(a, b, alpha).state_dict(), ref.state_dict())
        assert _same(tk.interpolate_weights(a.state_dict(), b.state_dict(), alpha),
                     ref.state_dict())
    mid = tk.interpolate_weights(a, b, 0.5).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in mid.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (sa[k] + sb[k]) / 2)
    with pytest.raises(ValueError, match="alpha must be a number in"):
        tk.interpolate_weights(a, b, 1.5)
    with pytest.raises(ValueError, match="differ in keys"):
        tk.interpolate_weights(a, tk.replace_head(tk.load_backbone("tiny_cnn_test"), 3,
                                                  head="mlp"), 0.5)


@pytest.fixture(scope="module")
def data():
    X, y = patterns(36, size=16, seed=0)
    Xv, yv = patterns(24, size=16, seed=5)
    return (X, y), (Xv, yv)


def test_wise_alpha_0_and_1_reproduce_the_two_endpoints(data) -> None:
    train, val = data
    plain = tiny_model(seed=0)
    probe = _Probe()
    tk.finetune(plain, train, val, callbacks=[probe], **_OPTS)
    one = tiny_model(seed=0)
    tk.finetune(one, train, val, wise_alpha=1.0, **_OPTS)
    assert _same(one.state_dict(), plain.state_dict())
    zero = tiny_model(seed=0)
    hist = tk.finetune(zero, train, val, wise_alpha=0.0, **_OPTS)
    assert _same(zero.state_dict(), probe.state)
    assert not _same(probe.state, plain.state_dict())
    assert hist.wise["alpha"] == 0.0


def test_wise_auto_is_never_worse_on_val_than_either_endpoint(data) -> None:
    train, val = data
    model = tiny_model(seed=0)
    probe = _Probe()
    hist = tk.finetune(model, train, val, wise_alpha="auto", callbacks=[probe], **_OPTS)
    tuned = tiny_model(seed=0)
    tk.finetune(tuned, train, val, **_OPTS)
    def score(m):
        r = tk.evaluate(m, val, progress=False, channels_last=False)
        return r.accuracy, -r.loss
    endpoint_probe = tk.interpolate_weights(probe.state, tuned.state_dict(), 0.0)
    p = tiny_model(seed=0)
    p.load_state_dict(endpoint_probe)
    chosen = score(model)
    assert chosen >= score(p) and chosen >= score(tuned)
    assert set(hist.wise["sweep"]) == {i / 10 for i in range(11)}
    assert hist.wise["sweep"][hist.wise["alpha"]]["val_accuracy"] == pytest.approx(chosen[0])


@pytest.mark.parametrize("opts, match", [
    (dict(wise_alpha=0.5, strategy="full"), "needs strategy='lp_ft'"),
    (dict(wise_alpha=-0.1), "alpha must be a number in"),
    (dict(wise_alpha="best"), "alpha must be a number in"),
])
def test_bad_wise_options_refused(data, opts, match) -> None:
    model = tiny_model(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        tk.finetune(model, *data, **{**_OPTS, **opts})
    with pytest.raises(ValueError, match="pass val_data"):
        tk.finetune(model, data[0], **{**_OPTS, "wise_alpha": "auto"})
    assert _same(model.state_dict(), before)
