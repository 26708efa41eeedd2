"""The robustness matrix: one row per kind of bad, faulty or odd-but-legal input (issue 15).

Each row is ``input -> expected outcome``: ``WORKS`` (with a check of the result), or the
error type and a phrase of its message. ``item`` is the issue's item the row was added for
(``None``: a case that already worked and must keep working). Every row runs under a timeout
(:data:`ROW_TIMEOUT`), so a hang fails instead of blocking CI. Hypothesis then draws tensor
inputs (dtype, layout, shape, value range, label form) that must train or raise one of
transferkit's own errors, never a raw torch or numpy one.

docs/robustness.md quotes the counts of this table; ``test_docs_quote_the_counts`` keeps
them true.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import transferkit as tk
from transferkit import errors as E
from transferkit._io import folder_lock
from transferkit.data.files import ImageFiles, load_image
from transferkit.data.preprocess import pil_pixels
from transferkit.data.sources import iter_eval_batches

sys.path.insert(0, os.path.dirname(__file__))
from _synthetic import patterns, tiny_model  # noqa: E402

WORKS = "works"
ROW_TIMEOUT = 30  # seconds


@dataclass(frozen=True)
class Case:
    id: str
    item: int | None
    run: Callable[[Path], Any]
    expect: Any  # WORKS, or (exception type, regex of the message)
    check: Callable[[Any], None] | None = None


@contextmanager
def _timeout(seconds: int):
    def fail(*_):
        raise TimeoutError(f"the row ran longer than {seconds} s (a hang?)")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- helpers ------------------------------------------------------------------------------------
def _ft(model, data, val=None, **kw):
    opts = dict(epochs=1, strategy="full", progress=False, batch_size=8, cache_features=False)
    opts.update(kw)
    return tk.finetune(model, data, val, **opts)


def _png(path: Path, colour=(200, 30, 30), size=16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def _folder(root: Path, classes=("a", "b", "c"), n=3) -> Path:
    for k, c in enumerate(classes):
        for i in range(n):
            _png(root / c / f"{i}.png", colour=(80 * k, 20 * i, 100))
    return root


def _tensor_data(n=12, size=16):
    return patterns(n, size)


# -- item 1: folders matched to the model's classes by name ------------------------------------
def _eval_targets(tmp):
    model = tiny_model(3, class_names=["a", "b", "c"])
    _folder(tmp / "test", classes=("b", "c"))  # "a" missing
    return torch.cat([y for _, y in iter_eval_batches(str(tmp / "test"), model, num_workers=0)])


def _eval_unknown_class(tmp):
    model = tiny_model(2, class_names=["a", "b"])
    return tk.evaluate(model, str(_folder(tmp / "t", classes=("a", "zebra"))), progress=False)


def _cli_eval_by_name(tmp):
    from transferkit.cli import main

    model = tiny_model(3, class_names=["a", "b", "c"])
    tk.save(model, tmp / "m")
    _folder(tmp / "test", classes=("b", "c"))
    rc = main(["evaluate", str(tmp / "m"), "--data", str(tmp / "test"), "--no-progress",
               "--json", str(tmp / "r.json")])
    return rc, json.loads((tmp / "r.json").read_text())


# -- items 2, 3: decoding --------------------------------------------------------------------
def _png16(tmp):
    a = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(a).save(tmp / "g.png")
    return np.asarray(load_image(str(tmp / "g.png")))


def _exif_rotated(tmp):
    img = Image.new("RGB", (20, 10), (255, 255, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    img.save(tmp / "r.jpg", exif=exif)
    return load_image(str(tmp / "r.jpg")).size, pil_pixels(Image.open(tmp / "r.jpg")).size


# -- item 4, 11: folder scanning -------------------------------------------------------------
def _symlink_loop(tmp):
    root = _folder(tmp / "d", classes=("a", "b"), n=3)
    os.symlink("..", root / "a" / "up")      # back to the root
    os.symlink(".", root / "a" / "self")     # a loop on itself
    os.symlink("0.png", root / "b" / "again.png")  # the same file twice
    return ImageFiles(root)


def _bad_files(tmp):
    root = _folder(tmp / "d", classes=("a", "b"), n=2)
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("not an image")
    data = (root / "b" / "0.png").read_bytes()
    (root / "b" / "cut.png").write_bytes(data[: len(data) // 2])
    os.symlink(root / "nowhere.png", root / "b" / "broken.png")
    return root


def _skip_bad(tmp):
    root = _bad_files(tmp)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = ImageFiles(root, skip_bad_images=True)
    return len(ds), len(ds.skipped), [str(x.message) for x in w]


def _fifo(tmp):
    root = _folder(tmp / "d", classes=("a", "b"), n=2)
    os.mkfifo(root / "a" / "pipe.png")
    return _ft(tiny_model(2), str(root), num_workers=0)


# -- item 5 ------------------------------------------------------------------------------------
def _one_class(tmp):
    X, _ = _tensor_data()
    return _ft(tiny_model(3), (X, torch.zeros(len(X), dtype=torch.long)))


def _int16_like_uint8(tmp):
    model = tiny_model(3)
    u8 = (X12 * 255).round().byte()
    return [torch.cat([x for x, _ in iter_eval_batches((data, Y12), model, num_workers=0)])
            for data in (u8, u8.to(torch.int16))]


# -- item 7: predict ---------------------------------------------------------------------------
def _predict_uint8_default(tmp):
    model = tiny_model(3)
    raw = (torch.rand(2, 3, 40, 40) * 255).byte()
    a = tk.predict(model, raw)
    b = tk.predict(model, raw, preprocess=True)
    return [p.probability for p in a], [p.probability for p in b]


def _predict_diverged(tmp):
    model = tiny_model(3)
    with torch.no_grad():
        model.head.fc.weight.fill_(float("nan")) if hasattr(model.head, "fc") else [
            p.fill_(float("nan")) for p in model.head.parameters()]
    return tk.predict(model, torch.rand(2, 3, 16, 16))


# -- item 8: divergence --------------------------------------------------------------------------
class _Poison:
    """After the last batch of epoch ``at`` (0-based), multiply or overwrite the head weights."""

    def __init__(self, at: int, value: float, scale: bool = False) -> None:
        self.at, self.value, self.scale = at, value, scale

    def on_batch_end(self, trainer, i, loss):
        if trainer.epoch == self.at and i + 1 == trainer._batches_per_epoch():
            with torch.no_grad():
                for p in trainer.model.head.parameters():
                    p.mul_(self.value) if self.scale else p.fill_(self.value)


def _diverged_weights_keep_checkpoint(tmp):
    X, y = _tensor_data(16)
    model = tiny_model(3)
    try:
        _ft(model, (X, y), epochs=3, checkpoint_dir=tmp / "ck", callbacks=[_Poison(1, float("inf"))])
    except E.TrainingError as exc:
        ck = torch.load(tmp / "ck" / "last.pt", weights_only=True)
        finite = all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
        return str(exc), ck["epoch"], finite
    raise AssertionError("no TrainingError")


def _val_loss_huge(tmp):
    X, y = _tensor_data(16)
    return _ft(tiny_model(3), (X, y), (X, y), epochs=2, callbacks=[_Poison(0, 1e30, scale=True)])


# -- item 9: resume --------------------------------------------------------------------------
def _resume_changed(tmp, **change):
    X, y = _tensor_data(16)
    _ft(tiny_model(3), (X, y), epochs=2, checkpoint_dir=tmp / "ck", seed=1)
    opts = dict(epochs=2, checkpoint_dir=tmp / "ck", resume=True, seed=1)
    opts.update(change)
    model = tiny_model(3, head=opts.pop("head", "linear"))
    return _ft(model, (X, y), **opts)


def _locked(tmp):
    X, y = _tensor_data(16)
    with folder_lock(tmp / "ck"):
        return _ft(tiny_model(3), (X, y), checkpoint_dir=tmp / "ck")


def _locked_other_process(tmp):
    (tmp / "ck").mkdir()
    # Another process holds the OS lock that folder_lock takes (flock on the folder itself);
    # plain Python, so that the row does not wait for a second torch import.
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp / 'ck')!r}, os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        X, y = _tensor_data(16)
        return _ft(tiny_model(3), (X, y), checkpoint_dir=tmp / "ck")
    finally:
        proc.kill()
        proc.wait()


def _stale_tmp(tmp):
    (tmp / "ck").mkdir()
    (tmp / "ck" / ".last.pt.abc123.tmp").write_bytes(b"half")
    X, y = _tensor_data(16)
    _ft(tiny_model(3), (X, y), checkpoint_dir=tmp / "ck")
    return sorted(p.name for p in (tmp / "ck").iterdir())


# -- item 10: save/load pairs ------------------------------------------------------------------
def _bit_flip(tmp):
    tk.save(tiny_model(3), tmp / "m")
    w = tmp / "m.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes
    w.write_bytes(bytes(data))
    return tk.load(tmp / "m")


def _concurrent_save_load(tmp):
    # Two models whose JSON differs too (class names), so a mixed pair is visible.
    a, b = tiny_model(3, class_names=["x", "y", "z"]), tiny_model(3, class_names=["p", "q", "r"])
    with torch.no_grad():
        for p in a.parameters():
            p.fill_(1.0)
        for p in b.parameters():
            p.fill_(2.0)
    tk.save(a, tmp / "m")
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            for m in (a, b):
                tk.save(m, tmp / "m")

    t = threading.Thread(target=writer)
    t.start()
    seen = []
    try:
        for _ in range(40):
            m = tk.load(tmp / "m")
            w = m.head.state_dict()
            values = {float(v.flatten()[0]) for v in w.values() if v.is_floating_point()}
            seen.append((m.class_names[0], values))
    finally:
        stop.set()
        t.join()
    return seen


# -- item 12: tensors ------------------------------------------------------------------------------
def _numpy_float64(tmp):
    X, y = _tensor_data()
    return _ft(tiny_model(3), (X.double().numpy(), y.numpy()))


def _pil_list_sizes(tmp):
    imgs = [Image.new("RGB", (16 + 3 * i, 20 + i), (40 * (i % 3), 90, 20)) for i in range(6)]
    return _ft(tiny_model(3), (imgs, [i % 3 for i in range(6)]), num_workers=0)


# -- item 14: files ------------------------------------------------------------------------------
def _load_torch_file(tmp):
    torch.save(tiny_model(3).state_dict(), tmp / "w.pt")
    return tk.load(tmp / "w.pt")


def _json_wrong_type(tmp, field, value):
    tk.save(tiny_model(3), tmp / "m")
    cfg = json.loads((tmp / "m.json").read_text())
    part, _, sub = field.partition(".")
    (cfg[part] if sub else cfg)[sub or part] = value
    (tmp / "m.json").write_text(json.dumps(cfg))
    return tk.load(tmp / "m")


def _weights_txt(tmp):
    (tmp / "w.txt").write_text("hello")
    return tk.load_backbone("tiny_cnn_test", weights=str(tmp / "w.txt"))


def _disk_full(tmp):
    from transferkit.training import checkpoint

    real_open = builtins.open
    checkpoint.open = lambda path, mode="r", *a, **k: real_open("/dev/full", mode)
    try:
        checkpoint.atomic_save({"x": torch.zeros(10_000)}, tmp / "last.pt")
    finally:
        del checkpoint.open


def _resume_empty(tmp):
    (tmp / "ck").mkdir()
    (tmp / "ck" / "last.pt").write_bytes(b"")
    X, y = _tensor_data(16)
    return _ft(tiny_model(3), (X, y), checkpoint_dir=tmp / "ck", resume=True)


def _umask(tmp):
    old = os.umask(0o022)
    try:
        w, j = tk.save(tiny_model(3), tmp / "m")
        X, y = _tensor_data(16)
        _ft(tiny_model(3), (X, y), checkpoint_dir=tmp / "ck")
        return [oct(p.stat().st_mode & 0o777) for p in (w, j, tmp / "ck" / "last.pt")]
    finally:
        os.umask(old)


# -- item 15: CLI --------------------------------------------------------------------------------
def _cli(tmp, *args, capsys=None):
    from transferkit.cli import main

    rc = main(list(args))
    return rc


def _cli_run(tmp, args):
    """``transferkit`` in this process; returns (exit status, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from transferkit.cli import main

    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        rc = main([a.format(tmp=tmp) for a in args])
    return rc, err.getvalue()


def _cli_finetune_args(extra):
    return ["finetune", "--data", "{tmp}/data", "--backbone", "tiny_cnn_test", "--weights",
            "none", "--epochs", "1", "--probe-epochs", "1", "--batch-size", "4",
            "--no-progress", *extra]


def _cli_case(extra, setup=None, command=None):
    def run(tmp):
        _folder(tmp / "data", classes=("a", "b"), n=6)
        if setup:
            setup(tmp)
        return _cli_run(tmp, command or _cli_finetune_args(extra))
    return run


def _cli_ctrl_c(tmp):
    ft = sys.modules["transferkit.finetune"]  # tk.finetune is the function

    def interrupted(model, train, held, **opts):
        Path(opts["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(opts["checkpoint_dir"]) / "last.pt").write_bytes(b"x")
        raise KeyboardInterrupt

    real = ft.finetune
    ft.finetune = interrupted
    try:
        return _cli_case(["--out", "{tmp}/out", "--checkpoint-dir", "{tmp}/ck"])(tmp)
    finally:
        ft.finetune = real


# -- item 16: predict streams ------------------------------------------------------------------
def _predict_streams(tmp):
    pr = sys.modules["transferkit.predict"]

    model = tiny_model(3)
    events = []
    real_prepare = pr._prepare

    def prepare(*a, **k):
        events.append("prepare")
        return real_prepare(*a, **k)

    model.register_forward_pre_hook(lambda *_: events.append("forward"))
    pr._prepare = prepare
    try:
        tk.predict(model, [torch.rand(3, 16, 16) for _ in range(6)], batch_size=2,
                   channels_last=False)
    finally:
        pr._prepare = real_prepare
    return events


# -- the table ------------------------------------------------------------------------------------
def _raise(exc, pattern):
    return (exc, pattern)


X12, Y12 = _tensor_data()

CASES: list[Case] = [
    # 1 folders by class name
    Case("evaluate_folder_missing_a_class_maps_by_name", 1, _eval_targets, WORKS,
         lambda t: set(t.tolist()) == {1, 2}),
    Case("evaluate_folder_unknown_class", 1, _eval_unknown_class,
         (E.DataError, r"\['zebra'\] .* are not classes of the model")),
    Case("cli_evaluate_folder_missing_a_class", 1, _cli_eval_by_name, WORKS,
         lambda r: r[0] == 0 and [r[1]["per_class"][c]["support"] for c in "abc"] == [0, 3, 3]),
    # 2, 3 decoding
    Case("png_16bit_gradient_not_white", 2, _png16, WORKS,
         lambda a: a.min() < 10 and a.max() > 245 and len(np.unique(a)) > 100),
    Case("exif_orientation_applied", 3, _exif_rotated, WORKS,
         lambda s: s == ((10, 20), (10, 20))),
    # 4 loops
    Case("symlink_loop_counts_each_file_once", 4, _symlink_loop, WORKS,
         lambda ds: len(ds) == 6),
    # 5 one class
    Case("one_class_training_data", 5, _one_class, (E.DataError, r"one class only")),
    Case("multiclass_head_with_one_output", 5,
         lambda t: _ft(tiny_model(1), (X12, torch.zeros(12, dtype=torch.long))),
         (E.DataError, r"needs >= 2 classes")),
    # 6 pixel ranges
    Case("float_pixels_0_255", 6, lambda t: _ft(tiny_model(3), (X12 * 255, Y12)),
         (E.DataError, r"Divide by 255")),
    Case("float_pixels_normalised", 6, lambda t: _ft(tiny_model(3), (X12 - 0.5, Y12)),
         (E.DataError, r"look normalised")),
    Case("int16_pixels_0_255_scaled_as_uint8", 6, _int16_like_uint8, WORKS,
         lambda xs: torch.equal(xs[0], xs[1])),
    Case("int32_pixels_over_255", 6,
         lambda t: _ft(tiny_model(3), ((X12 * 1000).to(torch.int32), Y12)),
         (E.DataError, r"Integer pixels must be in 0\.\.255")),
    Case("predict_float_0_255", 6, lambda t: tk.predict(tiny_model(3), X12[:2] * 255),
         (E.DataError, r"Divide by 255")),
    # 7 predict rule
    Case("predict_uint8_preprocessed_by_default", 7, _predict_uint8_default, WORKS,
         lambda ab: ab[0] == pytest.approx(ab[1])),
    Case("predict_uint8_with_preprocess_false", 7,
         lambda t: tk.predict(tiny_model(3), torch.zeros(1, 3, 16, 16, dtype=torch.uint8),
                              preprocess=False),
         (E.DataError, r"raw pixels, not model inputs")),
    Case("predict_nan_input", 7,
         lambda t: tk.predict(tiny_model(3), torch.full((1, 3, 16, 16), float("nan"))),
         (E.DataError, r"NaN or infinite")),
    Case("predict_diverged_model", 7, _predict_diverged,
         (E.TrainingError, r"outputs are NaN or infinite")),
    # 8 divergence
    Case("weights_become_inf_checkpoint_kept", 8, _diverged_weights_keep_checkpoint, WORKS,
         lambda r: "weights became NaN or infinite" in r[0] and r[1] == 1 and r[2]),
    Case("val_loss_1e30", 8, _val_loss_huge, (E.TrainingError, r"validation loss became")),
    Case("negative_clip_grad_norm", 8, lambda t: _ft(tiny_model(3), (X12, Y12),
                                                      clip_grad_norm=-1.0),
         (ValueError, r"clip_grad_norm must be None or a number > 0")),
    Case("negative_backbone_lr_mult", 8, lambda t: _ft(tiny_model(3), (X12, Y12),
                                                        backbone_lr_mult=-0.1),
         (ValueError, r"backbone_lr_mult must be None or a number >= 0")),
    # 9 resume
    Case("resume_other_epochs", 9, lambda t: _resume_changed(t, epochs=4),
         (E.ResumeError, r"epochs 2 -> 4")),
    Case("resume_other_lr", 9, lambda t: _resume_changed(t, lr=0.1),
         (E.ResumeError, r"lr 0\.001 -> 0\.1")),
    Case("resume_same_options", 9, lambda t: _resume_changed(t), WORKS,
         lambda h: len(h) == 2),
    Case("checkpoint_dir_locked_same_process", 9, _locked,
         (E.FolderLockedError, r"Another process is using")),
    Case("checkpoint_dir_locked_other_process", 9, _locked_other_process,
         (E.FolderLockedError, r"as checkpoint_dir")),
    # 10 save/load pairs
    Case("bit_flipped_safetensors", 10, _bit_flip, (E.ModelFormatError, r"checksum")),
    Case("load_while_saving_sees_one_pair", 10, _concurrent_save_load, WORKS,
         lambda seen: all(pair in (("x", {1.0}), ("p", {2.0})) for pair in seen)),
    # 11 bad files
    Case("bad_image_files_named", 11, lambda t: ImageFiles(_bad_files(t)),
         (E.DataError, r"4 of 8 image files .* cannot be read: .*empty\.png: empty file")),
    Case("bad_image_files_in_finetune", 11,
         lambda t: _ft(tiny_model(2), str(_bad_files(t))),
         (E.DataError, r"skip_bad_images=True")),
    Case("skip_bad_images", 11, _skip_bad, WORKS,
         lambda r: r[0] == 4 and r[1] == 4 and "skipped 4 unreadable" in r[2][0]),
    Case("fifo_in_folder_skipped_no_hang", 11, _fifo, WORKS, lambda h: len(h) == 1),
    # 12 tensors and labels
    Case("numpy_float64", 12, _numpy_float64, WORKS, lambda h: len(h) == 1),
    Case("float16_tensor", 12, lambda t: _ft(tiny_model(3), (X12.half(), Y12)), WORKS),
    Case("nhwc_layout", 12, lambda t: _ft(tiny_model(3), (X12.permute(0, 2, 3, 1), Y12)),
         (E.DataError, r"permute\(0, 3, 1, 2\)")),
    Case("five_d_input", 12, lambda t: _ft(tiny_model(3), (X12[:, None], Y12)),
         (E.DataError, r"5-D tensor")),
    Case("pil_images_of_different_sizes", 12, _pil_list_sizes, WORKS),
    Case("string_labels", 12,
         lambda t: _ft(tiny_model(3), (X12, np.array(["a", "b", "c"] * 4))),
         (E.DataError, r"labels y are strings")),
    Case("labels_n_by_1", 12, lambda t: _ft(tiny_model(3), (X12, Y12[:, None])), WORKS),
    Case("one_hot_labels", 12,
         lambda t: _ft(tiny_model(3), (X12, torch.nn.functional.one_hot(Y12, 3))),
         (E.DataError, r"look one-hot: pass y.argmax\(1\)")),
    Case("regression_width_differs", 12,
         lambda t: _ft(tiny_model(1), (X12, torch.rand(12, 3)), task="regression"),
         (E.DataError, r"need a head with 3 output")),
    # 13 last batch of one
    Case("last_batch_of_one_with_batchnorm", 13,
         lambda t: _ft(tiny_model(3, head="mlp", batch_norm=True), _tensor_data(17),
                       batch_size=8), WORKS, lambda h: len(h) == 1),
    # 14 files
    Case("load_plain_torch_file", 14, _load_torch_file,
         (E.ModelFormatError, r"PyTorch file .*load_backbone\(name, weights=path\)")),
    Case("json_num_classes_wrong_type", 14, lambda t: _json_wrong_type(t, "num_classes", "3"),
         (E.ModelFormatError, r"field 'num_classes' must be int")),
    Case("json_head_options_wrong_type", 14,
         lambda t: _json_wrong_type(t, "head.options", [1]),
         (E.ModelFormatError, r"field 'head.options' must be dict")),
    Case("weights_txt_file", 14, _weights_txt, (E.WeightsError, r"format '\.txt' is unknown")),
    Case("checkpoint_on_full_disk", 14, _disk_full, (OSError, r"No space left on device")),
    Case("resume_from_empty_last_pt", 14, _resume_empty,
         (E.WeightsError, r"last\.pt' is empty \(0 bytes\)")),
    Case("resume_other_architecture", 14, lambda t: _resume_changed(t, head="mlp"),
         (E.ResumeError, r"head 'linear' -> 'mlp'")),
    Case("stale_tmp_removed", 14, _stale_tmp, WORKS, lambda names: names == ["last.pt"]),
    Case("saved_files_honour_umask", 14, _umask, WORKS,
         lambda modes: modes == ["0o644"] * 3),
    # 15 CLI
    Case("cli_out_not_writable", 15,
         _cli_case(["--out", "{tmp}/afile"], setup=lambda t: (t / "afile").write_text("x")),
         WORKS, lambda r: r[0] == 2 and "--out" in r[1] and "cannot be written" in r[1]),
    Case("cli_device_foo", 15, _cli_case(["--device", "foo", "--out", "{tmp}/o"]), WORKS,
         lambda r: r[0] == 2 and "Unknown device 'foo'" in r[1]),
    Case("cli_json_is_a_folder", 15, _cli_case([], setup=lambda t: tk.save(tiny_model(2), t / "m"),
                                               command=["evaluate", "{tmp}/m", "--data",
                                                        "{tmp}/data", "--json", "{tmp}"]),
         WORKS, lambda r: r[0] == 2 and "--json" in r[1] and "is a folder" in r[1]),
    Case("cli_damaged_model_json", 15,
         _cli_case([], setup=lambda t: (tk.save(tiny_model(2), t / "m"),
                                        (t / "m.json").write_text("{broken")),
                   command=["evaluate", "{tmp}/m", "--data", "{tmp}/data"]),
         WORKS, lambda r: r[0] == 2 and "not valid JSON" in r[1]),
    Case("cli_val_fraction_too_small", 15,
         _cli_case(["--val-fraction", "0.01", "--out", "{tmp}/o"]), WORKS,
         lambda r: r[0] == 2 and "--val-fraction" in r[1]),
    Case("cli_resume_without_checkpoint_dir", 15,
         _cli_case(["--resume", "--out", "{tmp}/o"]), WORKS,
         lambda r: r[0] == 2 and "--resume needs --checkpoint-dir" in r[1]),
    Case("cli_ctrl_c_says_where", 15, _cli_ctrl_c, WORKS,
         lambda r: r[0] == 130 and "last.pt" in r[1] and "--resume" in r[1]),
    # 16 predict streams
    Case("predict_streams_in_batches", 16, _predict_streams, WORKS,
         lambda ev: ev.index("forward") < ev.index("prepare", 3) and ev.count("forward") == 3),
    # 17 API holes
    Case("class_names_a_string", 17,
         lambda t: tk.replace_head(tk.load_backbone("tiny_cnn_test"), 3, class_names="abc"),
         (TypeError, r"not 'abc'")),
    Case("callbacks_not_iterable", 17, lambda t: _ft(tiny_model(3), (X12, Y12), callbacks=5),
         (TypeError, r"callbacks must be a list")),
    Case("finetune_twice_documented", 17, lambda t: tk.finetune.__doc__, WORKS,
         lambda doc: "fresh optimiser and schedule" in doc),
    # cases that already worked: keep them working
    Case("uint8_tensor", None,
         lambda t: _ft(tiny_model(3), ((X12 * 255).byte(), Y12)), WORKS),
    Case("grey_nhw_tensor", None, lambda t: _ft(tiny_model(3), (X12[:, 0], Y12)), WORKS),
    Case("image_folder", None,
         lambda t: _ft(tiny_model(3, class_names=["a", "b", "c"]), str(_folder(t / "d")),
                       num_workers=0), WORKS),
    Case("labels_out_of_range", None,
         lambda t: _ft(tiny_model(3), (X12, Y12 + 5)), (E.DataError, r"Labels must be in")),
    Case("nan_pixels", None,
         lambda t: _ft(tiny_model(3), (X12.masked_fill(X12 > 0.8, float("nan")), Y12)),
         (E.DataError, r"NaN or infinite")),
    Case("x_y_length_mismatch", None, lambda t: _ft(tiny_model(3), (X12, Y12[:5])),
         (E.DataError, r"X has 12 samples but y has 5")),
    Case("empty_dataset", None, lambda t: _ft(tiny_model(3), (X12[:0], Y12[:0])),
         (E.DataError, r"empty")),
    Case("wrong_channel_count", None,
         lambda t: _ft(tiny_model(3), (torch.rand(12, 2, 16, 16), Y12)),
         (E.DataError, r"2 channels")),
    Case("epochs_zero", None, lambda t: _ft(tiny_model(3), (X12, Y12), epochs=0),
         (ValueError, r"epochs must be an int >= 1")),
    Case("unknown_option", None, lambda t: _ft(tiny_model(3), (X12, Y12), epoch=2),
         (TypeError, r"Known options")),
    Case("unknown_backbone", None, lambda t: tk.load_backbone("resnet5"),
         (E.UnknownNameError, r"resnet5")),
    Case("pickled_code_refused", None,
         lambda t: (torch.save({"f": print}, t / "evil.pt"),
                    tk.load_backbone("tiny_cnn_test", weights=str(t / "evil.pt"))),
         (E.UnsafeCheckpointError, r"Refused to load")),
    Case("load_missing_model", None, lambda t: tk.load(t / "nothing"),
         (E.MissingWeightsFileError, r"No saved model")),
]


def _row_outcome(case: Case) -> str:
    return WORKS if case.expect == WORKS else case.expect[0].__name__


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(case: Case, tmp_path: Path) -> None:
    torch.manual_seed(0)
    with _timeout(ROW_TIMEOUT):
        if case.expect == WORKS:
            result = case.run(tmp_path)
            if case.check is not None:
                assert case.check(result), f"{case.id}: unexpected result {result!r}"
            return
        exc_type, pattern = case.expect
        with pytest.raises(exc_type, match=pattern) as info:
            case.run(tmp_path)
        # transferkit's own error (or a built-in type it raises on purpose), never a raw one
        assert info.type.__module__.startswith(("transferkit", "builtins"))


def test_matrix_covers_every_item() -> None:
    items = {c.item for c in CASES}
    assert set(range(1, 18)) <= items
    assert len({c.id for c in CASES}) == len(CASES)


def matrix_counts() -> dict[str, int]:
    """Rows by expected outcome, as docs/robustness.md quotes them."""
    return dict(sorted(Counter(_row_outcome(c) for c in CASES).items()))


def test_docs_quote_the_counts() -> None:
    text = (Path(__file__).parents[1] / "docs" / "robustness.md").read_text(encoding="utf-8")
    counts = matrix_counts()
    assert f"{len(CASES)} cases" in text, (
        f"docs/robustness.md must say '{len(CASES)} cases'; counts: {counts}")
    for outcome, n in counts.items():
        assert re.search(rf"\|\s*`?{outcome}`?\s*\|\s*{n}\s*\|", text), (outcome, n, counts)


# -- hypothesis: the tensor path works or raises transferkit's own errors -------------------
_DTYPES = [torch.uint8, torch.int16, torch.int64, torch.float16, torch.float32,
           torch.float64, torch.bool]


@st.composite
def _inputs(draw):
    n = draw(st.integers(2, 6))
    dtype = draw(st.sampled_from(_DTYPES))
    layout = draw(st.sampled_from(["nchw", "nhwc", "nhw", "5d", "2d"]))
    size = draw(st.sampled_from([8, 16, 21]))
    scale = draw(st.sampled_from(["unit", "255", "signed", "nan", "huge"]))
    base = torch.rand(n, 3, size, size)
    base = {"unit": base, "255": base * 255, "signed": base * 2 - 1,
            "nan": base.masked_fill(base > 0.95, float("nan")), "huge": base * 1e6}[scale]
    if dtype == torch.bool:
        X = base > 0.5
    elif dtype.is_floating_point:
        X = base.to(dtype)
    else:
        X = base.nan_to_num(0).clamp(-3e4, 3e4).to(dtype)
    X = {"nchw": X, "nhwc": X.permute(0, 2, 3, 1), "nhw": X[:, 0], "5d": X[:, None],
         "2d": X.flatten(1)}[layout]
    form = draw(st.sampled_from(["int", "n1", "onehot", "float", "negative", "bool", "short"]))
    y = torch.arange(n) % 2
    y = {"int": y, "n1": y[:, None], "onehot": torch.nn.functional.one_hot(y, 2),
         "float": y.float() + 0.5, "negative": y - 1, "bool": y.bool(), "short": y[:-1]}[form]
    as_numpy = draw(st.booleans())
    if as_numpy:
        X, y = X.numpy(), y.numpy()
    return X, y


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_inputs())
def test_tensor_inputs_work_or_raise_transferkit_errors(data) -> None:
    X, y = data
    with _timeout(ROW_TIMEOUT):
        try:
            history = tk.finetune(tiny_model(2), (X, y), epochs=1, strategy="full",
                                  batch_size=4, progress=False, cache_features=False)
        except E.TransferkitError:
            return
        assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
