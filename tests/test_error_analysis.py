"""report.top_losses / plot_top_losses and tk.explain (Grad-CAM)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import transferkit as tk

from transferkit.data.preprocess import BatchPrep

from _synthetic import patterns, tiny_model

HAS_CAPTUM = importlib.util.find_spec("captum") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def test_top_losses_equals_hand_computed_cross_entropy():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (40,), generator=g)
    report = tk.compute_report(y, logits, class_names=list("abcde"))
    # by hand: -log softmax(logits)[y], sorted high to low
    ce = [-(logits[i, y[i]] - torch.logsumexp(logits[i], 0)).item() for i in range(40)]
    order = sorted(range(40), key=lambda i: -ce[i])[:7]
    top = report.top_losses(7)
    assert [t.index for t in top] == order
    assert [t.loss for t in top] == pytest.approx([ce[i] for i in order], abs=1e-12)
    probs = logits.softmax(1)
    for t in top:
        assert t.target == int(y[t.index]) and t.predicted == int(logits[t.index].argmax())
        assert t.probability == pytest.approx(float(probs[t.index].max()))
        assert t.target_probability == pytest.approx(float(probs[t.index, t.target]))
        assert t.target_name == "abcde"[t.target]
    assert report.top_losses(100)[-1].loss == pytest.approx(min(ce))  # k > N: all of them
    assert report.loss == pytest.approx(sum(ce) / 40)


def test_top_losses_errors():
    report = tk.compute_report(torch.tensor([0, 1]), torch.eye(2))
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        report.top_losses(0)
    reg = tk.compute_report(torch.rand(4), torch.rand(4), task="regression")
    with pytest.raises(ValueError, match="no per-sample losses"):
        reg.top_losses(2)
    loaded = tk.EvalReport.from_dict(report.to_dict())
    with pytest.raises(ValueError, match="loaded from JSON"):
        loaded.top_losses(1)


@pytest.mark.skipif(not HAS_MPL, reason='needs matplotlib: pip install "transferkit[plot]"')
def test_evaluate_keeps_what_plot_top_losses_needs(tmp_path):
    X, y = patterns(12, size=16)
    model = tiny_model(3, class_names=["r", "b", "g"])
    report = tk.evaluate(model, (X, y), progress=False)
    with torch.no_grad():
        model.eval()
        logits = model(BatchPrep(model.data_config, train=False)(X)).double()
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert [t.index for t in report.top_losses(4)] == ce.argsort(descending=True)[:4].tolist()
    fig = report.plot_top_losses(4, tmp_path / "top.png")
    assert (tmp_path / "top.png").stat().st_size > 0
    assert len([ax for ax in fig.axes if ax.images]) == 4  # each panel shows its image


# -- Grad-CAM on a model built so that the answer is known --------------------------------------
class _ColourDetector(nn.Module):
    """Channel 0 = red pixels, channel 1 = green pixels (a 1x1 conv, then ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 1] = 1.0
            self.conv.bias.zero_()
        self.stage = nn.Sequential(self.conv, nn.ReLU())

    def forward(self, x):
        return self.stage(x)


if "colour_detector_test" not in tk.list_backbones():
    tk.register_backbone("colour_detector_test", num_features=2,
                         data_config=tk.DataConfig(input_size=(3, 32, 32), resize_size=32,
                                                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
                         stages={"stage": ["stage"]})(lambda weights=None: _ColourDetector())


def _colour_model() -> tk.TransferModel:
    model = tk.replace_head(tk.load_backbone("colour_detector_test"), 2,
                            class_names=["red", "green"])
    linear = [m for m in model.head.modules() if isinstance(m, nn.Linear)][0]
    with torch.no_grad():  # logit c = mean of channel c: red drives class 0, green class 1
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
    return model


def _two_squares() -> torch.Tensor:
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 2:10, 3:11] = 1.0  # red square, top left
    x[0, 1, 20:30, 18:28] = 0.6  # green square, bottom right (weaker)
    return x


@pytest.mark.parametrize("backend", ["hooks", pytest.param("captum", marks=pytest.mark.skipif(
    not HAS_CAPTUM, reason='needs captum: pip install "transferkit[explain]"'))])
def test_gradcam_is_highest_on_the_region_that_drives_the_class(backend):
    model = _colour_model()
    x = _two_squares()
    for cls, (rows, cols) in ((0, (slice(2, 10), slice(3, 11))),
                              (1, (slice(20, 30), slice(18, 28)))):
        e = tk.explain(model, x, target=cls, backend=backend)
        assert e.backend == backend and e.layer == "model.stage"
        heat = e.heatmaps[0]
        inside = torch.zeros_like(heat, dtype=torch.bool)
        inside[rows, cols] = True
        peak = divmod(int(heat.argmax()), 32)
        assert inside[peak], (cls, peak)
        assert heat[inside].mean() > 5 * heat[~inside].mean()
    # the default target is the predicted class: red (mean 64/1024) beats green (60*0.6/1024)
    assert tk.explain(model, x, backend=backend).targets == [0]


def test_explain_leaves_the_model_as_it_was_and_checks_input():
    model = tiny_model(3)
    model.train()
    tk.freeze(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    e = tk.explain(model, torch.rand(2, 3, 16, 16))
    assert e.heatmaps.shape == (2, 16, 16) and e.overlays.shape == (2, 16, 16, 3)
    assert float(e.heatmaps.min()) >= 0 and float(e.heatmaps.max()) <= 1
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="method must be one of"):
        tk.explain(model, torch.rand(1, 3, 16, 16), method="lime")
    with pytest.raises(ValueError, match="target must be a class in"):
        tk.explain(model, torch.rand(1, 3, 16, 16), target=7)


@pytest.mark.skipif(not HAS_CAPTUM, reason='needs captum: pip install "transferkit[explain]"')
def test_captum_and_hooks_agree_on_resnet18():
    model = tk.replace_head(tk.load_backbone("resnet18"), 3)
    x = torch.rand(2, 3, 64, 64)
    a = tk.explain(model, x, backend="captum").heatmaps
    b = tk.explain(model, x, backend="hooks").heatmaps
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
