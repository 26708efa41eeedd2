"""Images decoded once (transferkit/data/decoded.py): same evaluation inputs as the samples path,
each file read once for a whole run, a memmap beyond the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import transferkit as tk
from transferkit.data import decoded as dec
from transferkit.data.preprocess import BatchPrep, sample_transform
from transferkit.data.sources import as_source
import _synthetic  # noqa: F401  (registers tiny_cnn_test)


@pytest.fixture
def folder(tmp_path):
    """10 noise images of odd sizes: JPEG (RGB) and PNG (grey), two classes."""
    rng = np.random.default_rng(0)
    for c in ("ant", "bee"):
        (tmp_path / c).mkdir()
        for i in range(5):
            h, w = (int(v) for v in rng.integers(36, 80, 2))
            img = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))
            if i % 2:
                img.save(tmp_path / c / f"{i}.jpg", quality=90)
            else:
                img.convert("L").save(tmp_path / c / f"{i}.png")
    return tmp_path


def _config(size=32):
    return tk.load_backbone("tiny_cnn_test").data_config.with_image_size(size)


@pytest.mark.parametrize("budget", [dec.DEFAULT_DECODE_BUDGET, 0])  # 0: a disk memmap
def test_decoded_evaluation_inputs_match_the_samples_path(folder, budget):
    config = _config()
    src = as_source(folder, config, train=False, augment=False)
    d = dec.decode_once(src, config, memory_budget=budget)
    s = dec.precrop_size(config)
    assert d.kind == "tensor" and d.X.dtype == torch.uint8 and d.X.shape == (10, 3, s, s)
    assert d.targets.tolist() == src.targets.tolist() and d.classes == ["ant", "bee"]
    assert (getattr(d, "_decoded_keep") is None) == (budget > 0)
    got = BatchPrep(config, train=False)(d.X)
    tf = sample_transform(config, train=False)
    want = torch.stack([tf(src.dataset[i][0]) for i in range(src.n)])
    std = torch.tensor(config.std)[:, None, None]
    diff = ((got - want) * std * 255).abs()  # in grey levels
    # uint8 rounding of the resized image (< 1 level); two JPEG decoders (a few levels)
    assert float(diff.mean()) < 0.5 and float(diff.max()) < 6


def test_finetune_reads_each_file_once(folder, monkeypatch):
    reads = []
    real_jpeg, real_open = dec._decode_jpeg, dec._mode

    def jpeg(path, c):
        reads.append(str(path))
        return real_jpeg(path, c)

    def mode(img, c):  # every non-JPEG image passes here once per read
        reads.append("pil")
        return real_open(img, c)

    monkeypatch.setattr(dec, "_decode_jpeg", jpeg)
    monkeypatch.setattr(dec, "_mode", mode)
    model = tk.replace_head(tk.load_backbone("tiny_cnn_test"), 2, seed=0)
    h = tk.finetune(model, folder, folder, epochs=3, strategy="full", image_size=16,
                    batch_size=4, progress=False, num_workers=0, channels_last=False)
    assert len(h) == 3
    assert len(reads) == 2 * 10  # training and validation sources: each image once
    reads.clear()
    tk.finetune(model, folder, epochs=1, strategy="full", image_size=16, batch_size=4,
                progress=False, num_workers=0, channels_last=False, decode_once=False)
    assert reads == []  # decode_once=False: the samples path, per epoch


def test_decodable():
    config = _config()
    X, y = torch.rand(4, 3, 16, 16), torch.arange(4) % 2
    assert not dec.decodable(as_source((X, y), config, train=True), False)
    pil = [(Image.new("RGB", (20, 24)), 0), (Image.new("RGB", (30, 24)), 1)]

    class PILs(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return pil[i]

    src = as_source(PILs(), config, train=True)
    assert dec.decodable(src, False) and not dec.decodable(src, True)
    d = dec.decode_once(src, config)
    assert d.X.shape == (2, 3, dec.precrop_size(config), dec.precrop_size(config))
