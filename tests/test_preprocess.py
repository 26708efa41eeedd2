"""One preprocessing for every input type (issue 12, defect 2).

The same images as a uint8 tensor, as PIL images, as an image folder and through ``predict``
must give the same evaluation inputs; the training augmentation must use the same parameters
(torchvision's RandomResizedCrop defaults, the weights' interpolation) on every path.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from transferkit.backbones import DataConfig
from transferkit.data.preprocess import (RRC_RATIO, RRC_SCALE, BatchPrep, _resize, random_boxes,
                                         sample_transform)
from transferkit.data.sources import iter_eval_batches
from transferkit.predict import _prepare, eval_transform

CONFIGS = {
    "bilinear": DataConfig(input_size=(3, 32, 32), resize_size=36, interpolation="bilinear"),
    "bicubic": DataConfig(input_size=(3, 32, 32), resize_size=37, interpolation="bicubic",
                          mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
}


def _images(grey: bool) -> torch.Tensor:
    """Four non-square uint8 images (N, C, 41, 50): an odd margin for the centre crop."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (4, 1 if grey else 3, 41, 50), generator=g, dtype=torch.uint8)


def _pil(x: torch.Tensor) -> list[Image.Image]:
    arr = x.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0


def _eval_inputs(data, config) -> torch.Tensor:
    model = SimpleNamespace(backbone=SimpleNamespace(data_config=config))
    return torch.cat([x for x, _ in iter_eval_batches(data, model, num_workers=0,
                                                      device="cpu")])


@pytest.mark.parametrize("grey", [False, True], ids=["rgb", "grey"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_tensor_pil_folder_and_predict_give_the_same_eval_inputs(tmp_path, name, grey):
    config = CONFIGS[name]
    x = _images(grey)
    y = torch.zeros(len(x), dtype=torch.long)
    pil = _pil(x)
    for i, im in enumerate(pil):
        (tmp_path / "a").mkdir(exist_ok=True)
        im.save(tmp_path / "a" / f"{i}.png")
    from_tensor = _eval_inputs((x, y), config)
    from_pil = _eval_inputs(_PilDataset(pil), config)
    from_folder = _eval_inputs(tmp_path, config)
    tf = eval_transform(config)
    from_predict_pil = torch.stack([_prepare(im, config, False, tf) for im in pil])
    from_predict_tensor = torch.stack([_prepare(xi, config, True, tf) for xi in x])
    assert from_tensor.shape == (4, 3, 32, 32)
    for other in (from_pil, from_folder, from_predict_pil, from_predict_tensor):
        torch.testing.assert_close(other, from_tensor, atol=1 / 255, rtol=0)


def test_eval_geometry_is_torchvisions_resize_and_centre_crop():
    """The tensor path's centre crop sits where torchvision's does (it was a pixel off)."""
    config = CONFIGS["bilinear"]
    x = _images(False).float() / 255
    ref = TF.center_crop(TF.resize(x, [36], antialias=True), [32])
    ref = TF.normalize(ref, list(config.mean), list(config.std))
    torch.testing.assert_close(BatchPrep(config, train=False)(x), ref)


def _rrc(transform):
    return next(t for t in transform.transforms if isinstance(t, v2.RandomResizedCrop))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_augmentation_has_the_same_parameters_on_every_path(name):
    config = CONFIGS[name]
    batch = _rrc(BatchPrep(config, train=True).geometry)
    sample = _rrc(sample_transform(config, train=True))
    default = v2.RandomResizedCrop(32)
    for t in (batch, sample):
        assert tuple(t.scale) == RRC_SCALE == tuple(default.scale)
        assert tuple(t.ratio) == pytest.approx(RRC_RATIO) == tuple(default.ratio)
        assert t.interpolation == InterpolationMode(config.interpolation)  # bicubic stays
        assert t.antialias


def test_random_boxes_follow_torchvisions_distribution():
    """Boxes drawn for a whole batch have the law of RandomResizedCrop.get_params."""
    h, w, n = 30, 50, 3000
    boxes = random_boxes(n, h, w)  # (4, n)
    top, left, bh, bw = boxes
    assert ((top >= 0) & (left >= 0) & (top + bh <= h) & (left + bw <= w) & (bh > 0)).all()
    ref = torch.tensor([v2.RandomResizedCrop.get_params(torch.empty(1, h, w), list(RRC_SCALE),
                                                        list(RRC_RATIO)) for _ in range(n)]).T
    for a, b in ((bh * bw / (h * w), ref[2] * ref[3] / (h * w)),
                 ((bw / bh).log(), (ref[3] / ref[2]).log()),
                 ((top + bh / 2) / h, (ref[0] + ref[2] / 2) / h)):
        a, b = a.double(), b.double()
        # means and spreads agree within 4 standard errors
        se = math.sqrt(a.var() / n + b.var() / n)
        assert abs(a.mean() - b.mean()) < 4 * se
        assert abs(a.std() - b.std()) < 0.1 * b.std()


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("box", [(2, 3, 20, 17), (0, 0, 41, 50)], ids=["grow", "shrink"])
def test_batch_crop_resize_equals_torchvisions_resized_crop(mode, box):
    x = _images(False)[:1].float() / 255
    t, left, bh, bw = box
    ours = _resize(x[:, :, t:t + bh, left:left + bw], 32, mode)
    ref = TF.resized_crop(x, t, left, bh, bw, [32, 32], interpolation=InterpolationMode(mode),
                          antialias=True)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_train_batch_is_flipped_and_cropped_per_image():
    """Each image of a batch gets its own draw (not one box for the whole batch)."""
    config = DataConfig(input_size=(3, 16, 16), resize_size=16)
    x = _images(False)[:1].expand(8, -1, -1, -1)
    out = BatchPrep(config, train=True)(x)
    assert out.shape == (8, 3, 16, 16)
    assert len({tuple(np.round(o.flatten()[:8].numpy(), 4)) for o in out}) > 1
