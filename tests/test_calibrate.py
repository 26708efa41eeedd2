"""Temperature scaling (tk.calibrate): one temperature, applied in one function by evaluate
and predict, kept by save/load; argmax unchanged, validation NLL not higher, ECE quoted."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk
from transferkit.metrics.temperature import fit_temperature

from _synthetic import patterns, tiny_model


@pytest.fixture(scope="module")
def overconfident():
    """A tiny model trained hard on a few noisy-labelled images: over-confident on val."""
    torch.manual_seed(0)
    model = tiny_model(seed=0)
    X, y = patterns(48, size=16, seed=1)
    y = y.clone()
    y[::5] = (y[::5] + 1) % 3  # 20 % label noise: the fitted model is confidently wrong
    tk.finetune(model, (X, y), strategy="full", epochs=40, lr=3e-2, batch_size=16,
                augment=False, progress=False, channels_last=False, seed=0)
    Xv, yv = patterns(60, size=16, seed=2)
    yv = yv.clone()
    yv[::5] = (yv[::5] + 1) % 3
    return model, (Xv, yv)


def test_calibrate_keeps_argmax_lowers_nll_and_quotes_ece(overconfident) -> None:
    model, val = overconfident
    before = tk.evaluate(model, val, progress=False)
    preds_before = [p.index for p in tk.predict(model, val[0], preprocess=True)]
    result = tk.calibrate(model, val)
    after = tk.evaluate(model, val, progress=False)
    assert model.temperature == result.temperature != 1.0
    assert result.nll_after <= result.nll_before
    assert after.loss == pytest.approx(result.nll_after, rel=1e-4)
    assert before.loss == pytest.approx(result.nll_before, rel=1e-4)
    assert after.accuracy == before.accuracy == pytest.approx(result.accuracy)
    assert [p.index for p in tk.predict(model, val[0])] == preds_before
    # the report quotes ECE after (ece) and before (ece_uncalibrated)
    assert after.metrics["ece_uncalibrated"] == pytest.approx(before.ece, abs=1e-9)
    assert after.ece == pytest.approx(result.ece_after, abs=1e-6)
    assert result.ece_before == pytest.approx(before.ece, abs=1e-6)
    assert "ece_uncalibrated" not in before.metrics
    assert "T = " in str(result)


def test_predict_probabilities_are_softmax_of_logits_over_t(overconfident, tmp_path) -> None:
    model, (Xv, _) = overconfident
    tk.calibrate(model, overconfident[1])
    with torch.no_grad():
        model.eval()
        x = tk.data.preprocess.BatchPrep(model.data_config, train=False)(Xv[:4])
        want = (model(x) / model.temperature).softmax(1).max(1).values
    got = torch.tensor([p.probability for p in tk.predict(model, Xv[:4])])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    tk.save(model, tmp_path / "m")
    loaded = tk.load(tmp_path / "m")
    assert loaded.temperature == model.temperature
    got2 = torch.tensor([p.probability for p in tk.predict(loaded, Xv[:4])])
    torch.testing.assert_close(got2, got)


def test_fit_temperature_matches_a_grid_search() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (300,), generator=g)
    logits = torch.randn(300, 4, generator=g) + 3 * torch.nn.functional.one_hot(y, 4)
    logits *= 4  # over-confident
    t = fit_temperature(logits, y)
    grid = torch.linspace(0.5, 10, 2000, dtype=torch.float64)
    nll = torch.stack([torch.nn.functional.cross_entropy(logits.double() / s, y) for s in grid])
    assert t == pytest.approx(float(grid[nll.argmin()]), abs=0.01)


def test_bad_input_refused_and_model_unchanged() -> None:
    model = tiny_model(seed=0)
    X, y = patterns(6, size=16)
    with pytest.raises(ValueError, match="max_iter"):
        tk.calibrate(model, (X, y), max_iter=0)
    with pytest.raises(ValueError, match="tta"):
        tk.calibrate(model, (X, y), tta="rotate")
    model.task = "regression"
    with pytest.raises(ValueError, match="multiclass"):
        tk.calibrate(model, (X, y.float()))
    assert getattr(model, "temperature", None) is None
    with pytest.raises(TypeError, match="TransferModel"):
        tk.calibrate(torch.nn.Linear(2, 2), (X, y))
