"""Is data the bottleneck? A folder of JPEGs: decoding speed (PIL vs torchvision.io), the
samples path per epoch vs the decoded-once batches, against lite0's training images/s.

The folder: foolbox's 20 real ImageNet photos (512 x 512 PNGs in its wheel), each saved as
several JPEGs (quality 90) of random crops from 300 to 512 px, into a temporary folder. For
each crop size (224 and 64 px) it times, one thread, the sides taking turns:

- decode + resize one image to the pre-crop size: ``PIL`` (the dataset loader) and
  ``torchvision.io.decode_image``;
- one training epoch of inputs without the model: the samples path (PIL loader +
  ``sample_transform`` per image, DataLoader with 0 workers) and the decoded-once path
  (``BatchPrep`` random resized crop + flip + normalise on ``uint8`` batches);
- lite0 training (forward + backward, channels-last, batch 32) images/s.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode_once.py --images 120
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.data import decoded as dec  # noqa: E402
from transferkit.data.preprocess import BatchPrep  # noqa: E402
from transferkit.data.sources import as_source  # noqa: E402


def make_folder(root: Path, n: int) -> None:
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        raise SystemExit("needs the foolbox wheel's photos: pip install --no-deps foolbox==3.3.4")
    base = list(spec.submodule_search_locations)[0]
    photos = sorted(glob.glob(f"{base}/data/imagenet_*"))
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
    for i in range(n):
        img = Image.open(photos[i % len(photos)]).convert("RGB")
        s = int(rng.integers(300, 513))
        x, y = (int(v) for v in rng.integers(0, 512 - s + 1, 2))
        img.crop((x, y, x + s, y + int(s * rng.uniform(0.75, 1.0)))).save(
            root / f"class{i % 2}" / f"{i}.jpg", quality=90)


def per_second(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="tk-jpegs-"))
    make_folder(tmp, args.images)
    n = args.images
    bb = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    for size in (224, 64):
        config = bb.data_config.with_image_size(size)
        src = as_source(tmp, config, train=True)
        s = dec.precrop_size(config)
        item = dec._Decode(src.dataset, s, int(config.crop_size), 3, config.interpolation)
        rates: dict[str, list[float]] = {k: [] for k in (
            "decode PIL", "decode torchvision", "epoch samples path", "epoch decoded batches",
            "lite0 training")}
        decoded = dec.decode_once(src, config)
        model = tk.replace_head(bb, 2, seed=0)
        model.train().to(memory_format=torch.channels_last)
        prep = BatchPrep(config, train=True)
        x_model = prep(decoded.X[:32]).contiguous(memory_format=torch.channels_last)

        def decode_with(which):
            dec.JPEG_DECODER = which
            for i in range(n):
                item[i]
            dec.JPEG_DECODER = "torchvision"

        def samples_epoch():
            for _ in src.batches(list(range(n)), batch_size=32, device=torch.device("cpu"),
                                 prep=prep, num_workers=0):
                pass

        def decoded_epoch():
            for i in range(0, n, 32):
                prep(decoded.X[i:i + 32])

        def train_steps():
            for _ in range(2):
                model(x_model).sum().backward()

        sides = {"decode PIL": (lambda: decode_with("pil"), n),
                 "decode torchvision": (lambda: decode_with("torchvision"), n),
                 "epoch samples path": (samples_epoch, n),
                 "epoch decoded batches": (decoded_epoch, n),
                 "lite0 training": (train_steps, 64)}
        names = list(sides)
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                fn, count = sides[name]
                rates[name].append(per_second(fn, count))
        print(f"\n{size} px crop (pre-crop {s} px), {n} JPEGs of 300-512 px, 1 thread:")
        for name, v in rates.items():
            print(f"  {name:<24}{float(np.median(v)):>9.1f} images/s")
        train = float(np.median(rates["lite0 training"]))
        print(f"  samples path / training: {float(np.median(rates['epoch samples path'])) / train:.2f}x;"
              f" decoded batches / training: {float(np.median(rates['epoch decoded batches'])) / train:.1f}x;"
              f" torchvision / PIL decode: {float(np.median(rates['decode torchvision'])) / float(np.median(rates['decode PIL'])):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
