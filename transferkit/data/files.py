"""Image folders read safely: classes matched by name, each file once, bad files found up front.

:class:`ImageFiles` is torchvision's ``ImageFolder`` (``root/<class name>/<image files>``, the
same ``samples``, ``targets``, ``classes`` and ``class_to_idx``) with four rules added:

- **Class names.** Given the model's ``class_names``, each folder takes the index of the class
  of the same name (a test folder that lacks a class still scores right); a folder whose name
  is not a class is an error.
- **Each file once.** Symbolic links are followed, but never into a folder already visited (a
  link loop is not an endless tree), and a file reached twice counts once.
- **Only regular files.** A FIFO, socket or device is skipped without being opened (opening a
  FIFO waits forever for a writer).
- **A header check.** Every file is opened and verified by PIL (:func:`check_image`) when the
  folder is read, in parallel threads for large folders: empty, truncated or non-image files
  and broken links are reported with their paths before any training, or skipped with a count
  when ``skip_bad_images=True``.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError
from .preprocess import pil_pixels

__all__ = ["ImageFiles", "check_image", "load_image"]

_PARALLEL_FROM = 64  # files; below this a thread pool costs more than it saves


def check_image(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable image (``"empty file"``, PIL's reason), or ``None``.

    A fast check, without decoding the pixels: the file must be non-empty, PIL must recognise
    its header and ``Image.verify()`` must pass (for PNG that checks every chunk's CRC); a JPEG
    must also end with its end-of-image marker (a truncated download does not).

    Example:
        >>> check_image("/no/such/file.png")
        'cannot be opened (broken link or missing file)'
    """
    from PIL import Image

    try:
        size = os.stat(path).st_size
    except OSError:
        return "cannot be opened (broken link or missing file)"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()
    except Exception as exc:  # PIL raises many types for damaged files
        return f"not a readable image ({type(exc).__name__}: {str(exc)[:120]})"
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, size - 1024))
            if b"\xff\xd9" not in f.read():
                return "truncated JPEG (no end-of-image marker)"
    return None


def load_image(path: str) -> Any:
    """Open an image file as an RGB PIL image, by the decoding rule of
    :func:`transferkit.data.preprocess.pil_pixels`; a decoding error names the file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return pil_pixels(img).convert("RGB")  # upright, 16-bit scaled, then RGB
    except Exception as exc:
        raise DataError(f"Cannot read the image {path!r} ({type(exc).__name__}: {exc}). "
                        "Remove or replace the file.") from None


class ImageFiles(ImageFolder):
    """An image folder ``root/<class>/<image>`` read by the rules of this module.

    Args:
        root: the folder.
        class_names: the model's class names: folders map to these indices by name, and
            ``classes`` is this list. ``None``: the sorted folder names, as ``ImageFolder``.
        skip_bad_images: skip unreadable files (with a warning that counts them) instead of
            raising.
        check: run the header check (:func:`check_image`) on every file.

    Raises:
        DataError: a folder name that is not in ``class_names``, a class folder without images,
            no class folders at all, or unreadable files (unless skipped), each with its path.

    Example:
        >>> ds = ImageFiles("photos", class_names=["cat", "dog"])  # doctest: +SKIP
        >>> ds.classes, len(ds)  # doctest: +SKIP
        (['cat', 'dog'], 40)
    """

    def __init__(self, root: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                 skip_bad_images: bool = False, check: bool = True, transform: Any = None
                 ) -> None:
        self._class_names = None if class_names is None else list(class_names)
        self._skip_bad, self._check = skip_bad_images, check
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of skipped files
        super().__init__(str(root), transform=transform, loader=load_image)
        if self._class_names is not None:
            self.classes = list(self._class_names)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        found = sorted(e.name for e in os.scandir(directory) if _is_dir(e.path))
        if not found:
            raise DataError(
                f"No class folders in {str(directory)!r}. Expected the ImageFolder layout: "
                "root/<class name>/<image files>."
            )
        if self._class_names is None:
            return found, {c: i for i, c in enumerate(found)}
        index = {c: i for i, c in enumerate(self._class_names)}
        unknown = [c for c in found if c not in index]
        if unknown:
            raise DataError(
                f"The folders {unknown[:5]} in {str(directory)!r} are not classes of the model "
                f"(its classes: {self._class_names[:10]}"
                f"{'...' if len(self._class_names) > 10 else ''}). Rename the folders to the "
                "model's class names, or remove them."
            )
        return [c for c in self._class_names if c in found], {c: index[c] for c in found}

    def make_dataset(self, directory: str | Path, class_to_idx: dict[str, int],
                     extensions: Any = None, is_valid_file: Any = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        samples: list[tuple[str, int]] = []
        for cls in sorted(class_to_idx):
            files = _image_files(Path(directory) / cls)
            if not files:
                raise DataError(
                    f"The class folder {str(Path(directory) / cls)!r} holds no image files "
                    f"({', '.join(IMG_EXTENSIONS)}). Add images or remove the folder."
                )
            samples += [(f, class_to_idx[cls]) for f in files]
        if self._check:
            samples = self._drop_bad(samples, str(directory))
        return samples

    def _drop_bad(self, samples: list[tuple[str, int]], root: str) -> list[tuple[str, int]]:
        paths = [p for p, _ in samples]
        if len(paths) >= _PARALLEL_FROM:
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                reasons = list(pool.map(check_image, paths, chunksize=32))
        else:
            reasons = [check_image(p) for p in paths]
        bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
        if not bad:
            return samples
        if not self._skip_bad:
            listed = "; ".join(f"{p}: {r}" for p, r in bad[:5])
            raise DataError(
                f"{len(bad)} of {len(paths)} image files in {root!r} cannot be read: {listed}"
                f"{' ...' if len(bad) > 5 else ''}. Remove or replace them, or pass "
                "skip_bad_images=True to skip them."
            )
        self.skipped = bad
        warnings.warn(f"transferkit: skipped {len(bad)} unreadable image file(s) of "
                      f"{len(paths)} in {root!r} (first: {bad[0][0]}: {bad[0][1]}).",
                      stacklevel=2)
        keep = {p for p, r in zip(paths, reasons) if r is None}
        kept = [(p, t) for p, t in samples if p in keep]
        if not kept:
            raise DataError(f"No readable image files are left in {root!r}.")
        return kept


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:  # a broken link
        return False


def _image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (links followed, no folder or file twice), sorted.

    Non-regular files (FIFOs, sockets, devices) are left out unopened; a name with an image
    suffix whose target cannot be reached (a broken link) is kept, so that the header check
    reports it.
    """
    # Ancestors count as seen: a link back up to one of them is a loop.
    seen_dirs = {(st.st_dev, st.st_ino) for st in map(os.stat, folder.resolve().parents)}
    seen_files: set[tuple[int, int]] = set()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:  # reached again through a link: a loop
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(IMG_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            try:
                fst = os.stat(path)
            except OSError:
                out.append(path)  # broken link: the check names it
                continue
            if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) in seen_files:
                continue
            seen_files.add((fst.st_dev, fst.st_ino))
            out.append(path)
    return out
