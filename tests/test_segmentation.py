"""Segmentation through the five verbs: metrics against scikit-learn, the frozen encoder, the
feature cache, save/load, predict, the data paths and the errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, f1_score, jaccard_score

import transferkit as tk
from transferkit.data.dense import DensePrep, SegmentationFolder, read_mask
from transferkit.errors import DataError
from transferkit.metrics.segmentation import ConfusionMeter, segmentation_report
from transferkit.training.segmentation import SegmentationLoss, pixel_class_weights

K = 3
SIZE = 32


def _model(num_classes: int = K, head: str = "unet", seed: int = 0) -> tk.TransferModel:
    torch.manual_seed(seed)
    bb = tk.load_backbone("mobilenet_v3_small", weights=None)
    bb.data_config = bb.data_config.with_image_size(SIZE)
    return tk.replace_head(bb, num_classes, head=head)


def _data(n: int = 8, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose masks can be learnt: class = which third of the intensity range."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, K, (n, size // 8, size // 8), generator=g)
    masks = masks.repeat_interleave(8, 1).repeat_interleave(8, 2)  # (n, size, size) blocks
    X = (masks.float() / (K - 1))[:, None].repeat(1, 3, 1, 1)
    return (0.95 * X + 0.05 * torch.rand(X.shape, generator=g)), masks


# -- metrics against scikit-learn ------------------------------------------------------------
def _sklearn_figures(truth: np.ndarray, pred: np.ndarray, k: int, ignore: int) -> dict:
    keep = truth != ignore
    t, p = truth[keep], pred[keep]
    cm = confusion_matrix(t, p, labels=list(range(k)))
    present = (cm.sum(0) + cm.sum(1)) > 0
    iou = jaccard_score(t, p, labels=list(range(k)), average=None, zero_division=0)
    dice = f1_score(t, p, labels=list(range(k)), average=None, zero_division=0)
    return {"cm": cm, "iou": iou, "dice": dice, "present": present,
            "pixel_accuracy": np.trace(cm) / cm.sum(), "mean_iou": np.nanmean(iou[present]),
            "mean_dice": np.nanmean(dice[present])}


@pytest.mark.parametrize("absent", [False, True], ids=["all-classes", "class-absent"])
def test_meter_over_batches_equals_sklearn(absent: bool) -> None:
    rng = np.random.default_rng(1 if absent else 0)
    k, ignore = 4, 255
    truth = rng.integers(0, k, (6, 9, 7))
    pred = rng.integers(0, k, (6, 9, 7))
    if absent:  # class 3 in neither truth nor prediction, class 2 predicted but never true
        truth[truth == 3] = 0
        pred[pred == 3] = 1
        truth[truth == 2] = 1
    truth[:, 0, :3] = ignore
    meter = ConfusionMeter(k, ignore)
    for i in range(0, 6, 4):  # two batches
        meter.update(torch.as_tensor(pred[i:i + 4]), torch.as_tensor(truth[i:i + 4]))
    report = segmentation_report(meter.matrix, n_samples=meter.n_samples)
    ref = _sklearn_figures(truth.ravel(), pred.ravel(), k, ignore)
    np.testing.assert_array_equal(report.confusion_matrix, ref["cm"])
    assert report.n_samples == 6
    assert report.pixel_accuracy == pytest.approx(ref["pixel_accuracy"])
    assert report.mean_iou == pytest.approx(ref["mean_iou"])
    assert report.mean_dice == pytest.approx(ref["mean_dice"])
    for c in range(k):
        got_iou, got_dice = report.iou[str(c)], report.dice[str(c)]
        if ref["present"][c]:
            assert got_iou == pytest.approx(ref["iou"][c])
            assert got_dice == pytest.approx(ref["dice"][c])
        else:
            assert got_iou is None and got_dice is None  # left out of the means
    freq = ref["cm"].sum(1) / ref["cm"].sum()
    fw = sum(freq[c] * ref["iou"][c] for c in range(k) if ref["present"][c])
    assert report.fw_iou == pytest.approx(fw)


def test_evaluate_equals_sklearn_on_the_models_own_predictions() -> None:
    model = _model()
    X, masks = _data(6)
    masks[0, :4, :4] = 255
    report = tk.evaluate(model, (X, masks), progress=False, batch_size=4)
    cfg = model.data_config
    with torch.no_grad():
        model.eval()
        x = (X - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None]
        pred = model(x).argmax(1)
    ref = _sklearn_figures(masks.numpy().ravel(), pred.numpy().ravel(), K, 255)
    np.testing.assert_array_equal(report.confusion_matrix, ref["cm"])
    assert report.mean_iou == pytest.approx(ref["mean_iou"])
    assert report.pixel_accuracy == pytest.approx(ref["pixel_accuracy"])
    assert report.task == "segmentation" and report.n_samples == 6
    assert "mean_iou" in str(report) and "pixel confusion matrix" in str(report)
    again = type(report).from_dict(report.to_dict())
    assert again.mean_iou == pytest.approx(report.mean_iou)


def test_evaluate_scores_each_mask_at_its_own_resolution() -> None:
    model = _model()
    X, masks = _data(2, size=48)  # images resized to 32, logits back to 48
    report = tk.evaluate(model, (X, masks), progress=False)
    assert int(report.confusion_matrix.sum()) == 2 * 48 * 48


# -- losses ----------------------------------------------------------------------------------
def test_losses_ignore_the_ignore_index_and_weights_balance_pixels() -> None:
    logits = torch.randn(2, K, 8, 8, requires_grad=True)
    masks = torch.randint(0, K, (2, 8, 8))
    masks[0, :4] = 255
    for kind in ("ce", "dice", "ce+dice"):
        loss = SegmentationLoss(kind)(logits, masks)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.all(grad[0, :, :4] == 0), kind  # ignored pixels give no gradient
        assert grad[0, :, 4:].abs().sum() > 0
    ce = SegmentationLoss("ce")(logits, masks)
    keep = masks != 255
    ref = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], masks[keep])
    torch.testing.assert_close(ce, ref)
    w = pixel_class_weights(torch.tensor([[0, 0, 0, 1], [255, 255, 0, 1]]), 3)
    torch.testing.assert_close(w, torch.tensor([6 / (3 * 4), 6 / (3 * 2), 6 / 3]))


def test_loss_option_is_checked_per_task_before_training() -> None:
    model = _model()
    X, masks = _data(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"loss 'l1' does not apply to task 'segmentation'"):
        tk.finetune(model, (X, masks), loss="l1", progress=False)
    with pytest.raises(ValueError, match="loss 'dice' does not apply to task 'multiclass'"):
        tk.finetune(_model(head="linear"), (X, torch.arange(4) % K), loss="dice",
                    progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# -- training --------------------------------------------------------------------------------
def test_finetune_task_defaults_to_the_models_and_learns() -> None:
    model = _model()
    X, masks = _data(16)
    assert model.task == "segmentation"
    start = tk.evaluate(model, (X, masks), progress=False).pixel_accuracy
    history = tk.finetune(model, (X, masks), strategy="full", epochs=15, lr=3e-3,
                          augment=False, batch_size=8, progress=False, loss="ce+dice")
    assert model.task == "segmentation" and history[-1]["train_accuracy"] is not None
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert tk.evaluate(model, (X, masks), progress=False).pixel_accuracy > max(start, 0.7)


def _encoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_linear_probe_keeps_the_encoder_bit_identical_and_cache_equals_no_cache() -> None:
    X, masks = _data(8)
    heads = []
    for cache in (True, False):
        model = _model(seed=3)
        before = _encoder_state(model)
        history = tk.finetune(model, (X, masks), strategy="linear_probe", epochs=2,
                              augment=False, batch_size=4, progress=False, seed=0,
                              cache_features=cache, channels_last=False)
        assert history[-1]["cached"] is cache
        after = model.backbone.state_dict()
        assert any("running_mean" in k for k in before)
        for k, v in before.items():  # weights and BatchNorm statistics, bit for bit
            assert torch.equal(v, after[k]), k
        heads.append({k: v.clone() for k, v in model.head.state_dict().items()})
    for k in heads[0]:
        torch.testing.assert_close(heads[0][k], heads[1][k], rtol=1e-4, atol=1e-5)


def test_cache_is_skipped_with_a_notice_when_augmenting(capsys) -> None:
    model = _model()
    X, masks = _data(4)
    history = tk.finetune(model, (X, masks), strategy="linear_probe", epochs=1,
                          augment=True, batch_size=4, progress=True)
    assert history[-1]["cached"] is False
    assert "feature cache off: the image/mask pairs are augmented" in capsys.readouterr().err


def test_augmentation_moves_image_and_mask_together() -> None:
    cfg = tk.DataConfig(input_size=(3, 24, 24), resize_size=24, interpolation="nearest",
                        mean=(0.0,) * 3, std=(1.0,) * 3)
    masks = torch.randint(0, 5, (6, 40, 40))
    X = masks[:, None].float().repeat(1, 3, 1, 1) / 10  # pixel value = label / 10
    torch.manual_seed(0)
    x, y = DensePrep(cfg, train=True, augment=True)(X, masks)
    assert x.shape == (6, 3, 24, 24) and y.shape == (6, 24, 24) and y.dtype == torch.long
    torch.testing.assert_close(x[:, 0] * 10, y.float())  # the same crop and flip for both
    assert set(y.unique().tolist()) <= set(range(5))  # labels never interpolated


# -- save / load / predict -------------------------------------------------------------------
def test_save_load_identical_logits_and_settings(tmp_path) -> None:
    model = _model()
    X, masks = _data(4)
    # channels_last pinned: "auto" may keep the weights channels-last (timed, load-dependent),
    # and the loaded, contiguous copy then rounds its convolutions differently (~4e-8)
    tk.finetune(model, (X, masks), strategy="full", epochs=1, ignore_index=7, batch_size=4,
                progress=False, augment=False, channels_last=False)
    tk.save(model, tmp_path / "m")
    back = tk.load(tmp_path / "m")
    assert back.task == "segmentation" and back.ignore_index == 7 and back.dense
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(X), model(X), rtol=0, atol=0)


def test_predict_returns_masks_and_writes_pngs(tmp_path) -> None:
    model = _model()
    X, _ = _data(3, size=40)
    preds = tk.predict(model, X, preprocess=True, probabilities=True, out_dir=tmp_path)
    assert len(preds) == 3
    for p in preds:
        assert p.mask.shape == (40, 40) and p.mask.dtype == torch.long
        assert p.probabilities.shape == (K, 40, 40)
        torch.testing.assert_close(p.probabilities.sum(0), torch.ones(40, 40))
        assert torch.equal(p.probabilities.argmax(0), p.mask)
        assert torch.equal(read_mask(p.path), p.mask)  # palette PNG read back as indices


# -- data layouts ----------------------------------------------------------------------------
def test_folder_of_images_and_palette_masks(tmp_path) -> None:
    from PIL import Image

    from transferkit.dense import write_mask_png

    X, masks = _data(4)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        Image.fromarray((X[i].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()).save(
            tmp_path / "images" / f"im{i}.jpg")
        write_mask_png(masks[i], tmp_path / "masks" / f"im{i}.png", K)
    ds = SegmentationFolder(tmp_path)
    assert len(ds) == 4
    _, m0 = ds[0]
    assert torch.equal(m0, masks[0])
    model = _model()
    tk.finetune(model, str(tmp_path), epochs=1, strategy="full", batch_size=2,
                progress=False, num_workers=0)
    report = tk.evaluate(model, str(tmp_path), progress=False, num_workers=0)
    assert int(report.confusion_matrix.sum()) == 4 * SIZE * SIZE
    (tmp_path / "masks" / "im3.png").unlink()
    with pytest.raises(DataError, match="have no mask"):
        SegmentationFolder(tmp_path)


# -- bad input -------------------------------------------------------------------------------
def _unchanged_after(model, call) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    call()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_mask_of_another_size_than_its_image() -> None:
    model = _model()
    X, masks = _data(4)

    def call():
        with pytest.raises(DataError, match=r"masks are \(16, 16\) .* images are \(32, 32\)"):
            tk.finetune(model, (X, masks[:, :16, :16]), progress=False)
    _unchanged_after(model, call)


def test_labels_outside_the_class_range() -> None:
    model = _model()
    X, masks = _data(4)
    masks[0, 0, 0] = 5
    masks[1, 0, 0] = 255  # ignored: allowed

    def call():
        with pytest.raises(DataError, match=r"Mask labels must be in \[0, 3\) \(and 255, "
                                            r"ignored\).*found \[5\]"):
            tk.finetune(model, (X, masks), progress=False)
    _unchanged_after(model, call)


def test_float_masks() -> None:
    model = _model()
    X, masks = _data(4)
    with pytest.raises(DataError, match="masks must be integer class indices, got torch.float32"):
        tk.finetune(model, (X, masks.float()), progress=False)


def test_classification_head_given_masks() -> None:
    model = _model(head="linear")
    X, masks = _data(4)

    def call():
        with pytest.raises(DataError, match=r"look like segmentation masks .*head='unet'"):
            tk.finetune(model, (X, masks), progress=False)
    _unchanged_after(model, call)
    with pytest.raises(ValueError, match="task 'segmentation' predicts per pixel, but the head "
                                         "'linear' is a classification head"):
        tk.finetune(model, (X, masks), task="segmentation", progress=False)


def test_checkpoint_resume_and_bf16_autocast(tmp_path) -> None:
    X, masks = _data(4)
    opts = dict(strategy="full", epochs=2, batch_size=4, augment=False, progress=False,
                amp="bf16", checkpoint_dir=tmp_path, channels_last=False)
    model = _model()
    first = tk.finetune(model, (X, masks), **opts)
    again = _model()
    resumed = tk.finetune(again, (X, masks), resume=True, **opts)  # the run was complete
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in first]
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
