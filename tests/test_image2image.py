"""Task "image2image": losses, option and target checks, report, and the verbs on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferkit.errors import DataError, UnknownNameError
from transferkit.training.image2image import (Image2ImageLoss, check_image2image_options,
                                              check_image_targets, make_image2image_loss)


# -- losses and checks ------------------------------------------------------------------------
def test_pixel_losses_match_torch():
    g = torch.Generator().manual_seed(0)
    out, y = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    assert torch.equal(Image2ImageLoss("l1")(out, y), torch.nn.functional.l1_loss(out, y))
    assert torch.equal(Image2ImageLoss("mse")(out, y), torch.nn.functional.mse_loss(out, y))
    y8 = (y * 255).round().to(torch.uint8)  # uint8 targets are scaled like the inputs
    torch.testing.assert_close(Image2ImageLoss("l1")(out, y8),
                               torch.nn.functional.l1_loss(out, y8.float() / 255))


def test_l1_plus_perceptual_is_the_weighted_sum():
    loss = make_image2image_loss("l1+perceptual", perceptual_weight=0.5)
    g = torch.Generator().manual_seed(1)
    out, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    expected = torch.nn.functional.l1_loss(out, y) + 0.5 * loss.perceptual(out, y)
    torch.testing.assert_close(loss(out, y), expected)
    assert float(make_image2image_loss("perceptual")(y, y)) == 0.0


def test_options_validated_up_front():
    with pytest.raises(ValueError, match="perceptual_weight only apply to loss='perceptual'"):
        check_image2image_options("l1", perceptual_weight=0.5)
    with pytest.raises(ValueError, match="perceptual_weight must be a number > 0"):
        check_image2image_options("l1+perceptual", perceptual_weight=-1)
    with pytest.raises(TypeError, match="perceptual_stages must be a non-empty list"):
        check_image2image_options("perceptual", perceptual_stages="stem")
    with pytest.raises(UnknownNameError, match=r"perceptual_backbone: Unknown backbone "
                                               r"'resnet5'\. Did you mean .*'resnet50'"):
        check_image2image_options("perceptual", perceptual_backbone="resnet5")


def test_target_checks():
    x = torch.rand(2, 3, 16, 16)
    check_image_targets(torch.rand(2, 3, 16, 16), 3, images=x)  # fine
    with pytest.raises(DataError, match=r"target images are \(32, 32\) \(H, W\) but their "
                                        r"inputs are \(16, 16\)"):
        check_image_targets(torch.rand(2, 3, 32, 32), 3, images=x)
    with pytest.raises(DataError, match="have 1 channels but the head outputs 3.*num_classes=1"):
        check_image_targets(torch.rand(2, 1, 16, 16), 3, images=x)
    with pytest.raises(DataError, match=r"pixels in \[0, 1\].*y / 255"):
        check_image_targets(torch.rand(2, 3, 16, 16) * 255, 3, images=x)
    with pytest.raises(DataError, match=r"Add the channel axis"):
        check_image_targets(torch.rand(2, 16, 16), 1, images=x)


# -- the report -------------------------------------------------------------------------------
def test_meter_averages_per_image_figures_and_recovers_the_baseline(tmp_path):
    from transferkit.metrics.image import psnr, ssim
    from transferkit.metrics.image2image import Image2ImageMeter, Image2ImageReport

    g = torch.Generator().manual_seed(2)
    target = torch.rand(6, 3, 24, 24, generator=g)
    degraded = (target * 0.7 + 0.1).clamp(0, 1)
    output = target + 0.05 * torch.randn(target.shape, generator=g)  # overshoots [0, 1]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    normed = (degraded - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    meter = Image2ImageMeter(examples=2, mean=mean, std=std)
    meter.update(output[:4], target[:4], normed[:4])  # two batches
    meter.update(output[4:], target[4:], normed[4:])
    r = meter.report()
    clamped = output.clamp(0, 1)  # metrics score the clamped output
    torch.testing.assert_close(r.psnr, float(psnr(clamped, target)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r.ssim, float(ssim(clamped, target)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r.baseline["psnr"], float(psnr(degraded, target)), rtol=1e-5,
                               atol=1e-4)
    torch.testing.assert_close(r.baseline["l1"], float((degraded - target).abs().mean()),
                               rtol=1e-5, atol=1e-6)
    assert r.n_samples == 6 and len(r.examples) == 2 and "perceptual" not in r.metrics
    back = Image2ImageReport.from_dict(r.to_dict())
    assert back.metrics == pytest.approx(r.metrics) and back.baseline == pytest.approx(r.baseline)
    assert "baseline" in str(r) and "psnr" in str(r)
    r.plot_panels(tmp_path / "panels.png")
    assert (tmp_path / "panels.png").stat().st_size > 1000


# -- the verbs on an image-to-image model -----------------------------------------------------
def _pairs(n: int = 8, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, 3, size, size, generator=g)
    x = torch.nn.functional.avg_pool2d(y, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    return x, y  # a blurred input, the sharp target


def _model(seed: int = 0):
    import transferkit as tk

    torch.manual_seed(seed)
    return tk.replace_head(tk.load_backbone("resnet18"), 3, head="unet", task="image2image",
                           decoder_channels=32, seed=seed)


def test_finetune_evaluate_predict_save_load(tmp_path):
    import transferkit as tk

    x, y = _pairs()
    model = _model()
    assert model.task == "image2image" and model.residual
    h = tk.finetune(model, (x, y), (x, y), epochs=2, strategy="full", batch_size=4,
                    progress=False)
    assert h[-1]["train_accuracy"] is None and "val_accuracy" not in h[-1]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    report = tk.evaluate(model, (x, y), progress=False)
    assert report.task == "image2image" and report.n_samples == 8
    assert set(report.metrics) == {"psnr", "ssim", "perceptual", "l1"}
    assert report.baseline["psnr"] == pytest.approx(
        float(__import__("transferkit.metrics.image", fromlist=["psnr"]).psnr(x, y)), abs=1e-3)
    preds = tk.predict(model, x[:3], out_dir=tmp_path / "png")
    assert [tuple(p.image.shape) for p in preds] == [(3, 32, 32)] * 3
    assert all(p.path.is_file() for p in preds) and float(preds[0].image.max()) <= 1
    tk.save(model, tmp_path / "m")
    loaded = tk.load(tmp_path / "m")
    assert loaded.task == "image2image"
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_perceptual_network_is_never_trained_nor_saved(tmp_path):
    import transferkit as tk

    x, y = _pairs(n=4)
    model = _model()
    seen = {}

    class Grab:
        def on_train_end(self, trainer, history):
            seen["criterion"] = trainer.criterion
            seen["opt_params"] = {id(p) for g in trainer.optimizer.param_groups
                                  for p in g["params"]}

    from transferkit.training.perceptual import PerceptualLoss

    reference = PerceptualLoss("efficientnet_lite0").net.state_dict()
    tk.finetune(model, (x, y), epochs=2, strategy="full", batch_size=2, progress=False,
                loss="l1+perceptual", perceptual_weight=1.0, callbacks=[Grab()])
    net = seen["criterion"].perceptual.net
    after = net.state_dict()
    assert all(torch.equal(reference[k], after[k]) for k in reference)  # weights and BN stats
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert not any(id(p) in seen["opt_params"] for p in net.parameters())
    assert not any("perceptual" in k for k in model.state_dict())


def test_bad_input_fails_before_any_work():
    import transferkit as tk

    x, y = _pairs(n=4)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match=r"target images are \(16, 16\).*inputs are \(32, 32\)"):
        tk.finetune(model, (x, y[..., :16, :16]), epochs=1, progress=False)
    with pytest.raises(DataError, match="have 1 channels but the head outputs 3"):
        tk.finetune(model, (x, y[:, :1]), epochs=1, progress=False)
    with pytest.raises(UnknownNameError, match="Did you mean"):
        tk.finetune(model, (x, y), epochs=1, progress=False, loss="perceptual",
                    perceptual_backbone="efficientnet_lite9")
    with pytest.raises(ValueError, match=r"loss 'ce' does not apply to task 'image2image'"):
        tk.finetune(model, (x, y), epochs=1, progress=False, loss="ce")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- every dense head as an image-to-image model ----------------------------------------------
def _dense_heads() -> list[str]:
    import transferkit as tk
    from transferkit.heads import get_head_spec

    return [n for n in tk.list_heads() if get_head_spec(n).dense]


@pytest.mark.parametrize("head", _dense_heads())
def test_every_dense_head_gives_the_target_shape_and_gradients(head):
    import transferkit as tk

    torch.manual_seed(0)
    model = tk.replace_head(tk.load_backbone("resnet18"), 3, head=head, task="image2image")
    model.train()
    x, y = torch.rand(2, 3, 45, 37), torch.rand(2, 3, 45, 37)  # odd sizes
    out = model(x)
    assert out.shape == y.shape and torch.isfinite(out).all()
    loss = make_image2image_loss("l1")(out, y)
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, missing[:5]
    assert any(float(p.grad.abs().sum()) > 0 for p in model.head.parameters())


@pytest.mark.slow
def test_demo_image2image_tiny_writes_table_and_panels(tmp_path):
    from transferkit.cli.demo_image2image import I2IDemoConfig, run_image2image_demo

    result = run_image2image_demo(I2IDemoConfig(tiny=True, out_dir=str(tmp_path),
                                                progress=False))
    models = {r["model"] for r in result["rows"]}
    assert len(result["rows"]) == 8 and "identity baseline (the degraded input)" in models
    assert all(0 < r["ssim"] <= 1 and r["psnr"] > 0 for r in result["rows"])
    for path in result["files"].values():
        assert Path(path).stat().st_size > 500
