"""Test-time augmentation in evaluate and predict: logits averaged over the views."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

import transferkit as tk
from transferkit.data.preprocess import BatchPrep

from _synthetic import patterns, tiny_model


def _logits(model, X):
    model.eval()
    with torch.no_grad():
        return model(BatchPrep(model.data_config, train=False)(X))


def test_flip_tta_averages_the_logits_of_image_and_mirror() -> None:
    model = tiny_model(seed=0)
    X, y = patterns(12, size=16)
    x = BatchPrep(model.data_config, train=False)(X)
    model.eval()
    with torch.no_grad():
        want = (model(x) + model(x.flip(-1))) / 2
    report = tk.evaluate(model, (X, y), tta="flip", progress=False, channels_last=False)
    ref = tk.compute_report(y, want, task="multiclass")
    assert report.loss == pytest.approx(ref.loss, rel=1e-5)
    plain = tk.evaluate(model, (X, y), progress=False, channels_last=False)
    assert plain.loss != pytest.approx(report.loss, rel=1e-6)  # the views did change it
    probs = torch.tensor([p.top_probabilities for p in tk.predict(model, X, tta="flip",
                                                                  top_k=3)])
    torch.testing.assert_close(probs, want.softmax(1).sort(1, descending=True).values,
                               atol=1e-5, rtol=1e-5)


def test_a_list_of_v2_transforms_adds_one_view_each() -> None:
    model = tiny_model(seed=0)
    X, _ = patterns(4, size=16)
    x = BatchPrep(model.data_config, train=False)(X)
    views = [v2.RandomVerticalFlip(p=1.0), v2.RandomHorizontalFlip(p=1.0)]
    model.eval()
    with torch.no_grad():
        want = (model(x) + model(x.flip(-2)) + model(x.flip(-1))) / 3
    got = torch.tensor([p.top_probabilities for p in tk.predict(model, X, tta=views, top_k=3)])
    torch.testing.assert_close(got, want.softmax(1).sort(1, descending=True).values,
                               atol=1e-5, rtol=1e-5)


def test_bad_tta_refused() -> None:
    model = tiny_model(seed=0)
    X, y = patterns(4, size=16)
    with pytest.raises(ValueError, match="tta must be None, 'flip'"):
        tk.evaluate(model, (X, y), tta="mirror", progress=False)
    with pytest.raises(TypeError, match="tta must be"):
        tk.predict(model, X, tta=[])
    with pytest.raises(ValueError, match="keep the crop size"):
        tk.predict(model, X, tta=[v2.CenterCrop(8)])
