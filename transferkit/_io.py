"""Files written safely: atomic replacement, the user's umask, clear disk-full errors, checksums
and a lock that keeps two processes from training into one folder.

Every file transferkit writes (checkpoints, saved models) goes through :func:`atomic_write`:
the bytes go to a temporary file beside the target, are flushed to disk, and the temporary
file is renamed over the target, so a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import FolderLockedError

__all__ = ["atomic_write", "atomic_write_bytes", "sha256_bytes", "folder_lock",
           "remove_stale_tmp", "allocate_store", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process's umask (read and restored at once: there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _disk_full(path: Path, exc: BaseException) -> OSError:
    return OSError(
        errno.ENOSPC,
        f"No space left on device while writing {str(path)!r} (the previous file, if any, is "
        f"intact). Free some space or write to another folder. ({exc})",
    )


def _is_disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        "No space left" in str(exc))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would (``0o666`` minus the
    umask), not ``mkstemp``'s ``0o600``. A full disk raises ``OSError(ENOSPC)`` naming
    ``path``; whatever happens, the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write(p, lambda tmp: pathlib.Path(tmp).write_text("hi")).read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # durable before it takes the final name
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_disk_full(exc):
            raise _disk_full(path, exc) from None
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()

    return atomic_write(path, write)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writes killed mid-way left in ``folder``.

    Only files named as :func:`atomic_write` names them (``.<name>.<random>.tmp``) are
    removed. Call it while holding :func:`folder_lock`, so that no live writer owns them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "this folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` itself for the ``with`` block.

    The lock is an OS file lock (``fcntl.flock``) on the folder's own descriptor, so no lock
    file is left behind, and it goes away when the process ends, even when it is killed: a
    crashed run never leaves a stale lock. Where ``fcntl`` does not exist (Windows) no lock
    is taken.

    Raises:
        FolderLockedError: another process holds the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield folder
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FolderLockedError(
                f"Another process is using {str(folder)!r} as {what} right now. Wait for it "
                "to finish, or use another folder."
            ) from None
        try:
            yield folder
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def allocate_store(shape: tuple[int, ...], dtype: Any, budget: int, *,
                   prefix: str = "transferkit-cache-") -> tuple[Any, str | None, Any]:
    """An empty tensor store: in memory within ``budget`` bytes, else a temporary disk memmap.

    The one rule of every large store (feature caches, images decoded once). On POSIX the
    memmap's file is unlinked at once, so nothing is left behind on a crash; where a mapped
    file cannot be removed (Windows) it is removed when the array is freed.

    Returns:
        ``(tensor, path, keep)``: ``path`` is the memmap's file (``None`` in memory) and
        ``keep`` the numpy memmap behind the tensor, to hold as long as the tensor is used.
    """
    import numpy as np
    import torch

    element = torch.empty((), dtype=dtype)
    if math.prod(shape) * element.element_size() <= budget:
        return torch.empty(shape, dtype=dtype), None, None
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".npy")
    os.close(fd)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=element.numpy().dtype, shape=shape)
    try:
        os.unlink(path)
    except OSError:
        weakref.finalize(mm, _remove_quietly, path)
    return torch.from_numpy(mm), path, mm


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
