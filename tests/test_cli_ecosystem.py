"""CLI: --version, an example in every subcommand's --help, export, predict --explain / .onnx."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

import transferkit as tk
from transferkit.cli import main
from transferkit.cli.main import build_parser

from _synthetic import tiny_model

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


def _subcommands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  transferkit " + command in out


def test_python_dash_m_version():
    out = subprocess.run([sys.executable, "-m", "transferkit", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"transferkit {tk.__version__}"


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(3, class_names=["r", "b", "g"])
    tk.save(model, tmp_path / "model")
    images = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8).numpy()).save(p)
        images.append(str(p))
    return tmp_path, model, images


def test_export_command_writes_a_checked_file(saved, capsys):
    tmp, model, _ = saved
    assert main(["export", str(tmp / "model"), str(tmp / "m.pt2"), "--format",
                 "exported_program"]) == 0
    assert "max |exported - torch|" in capsys.readouterr().out
    meta = json.loads((tmp / "m.pt2.json").read_text())
    assert meta["class_names"] == ["r", "b", "g"] and meta["export_format"] == "exported_program"


def test_export_command_bad_format_is_one_line(saved, capsys):
    tmp, _, _ = saved
    assert main(["export", str(tmp / "model"), str(tmp / "m.x"), "--format", "tflite"]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_ONNX, reason='needs the onnx extra: pip install "transferkit[onnx]"')
def test_predict_serves_an_exported_onnx_file_like_the_model(saved, capsys):
    tmp, _, images = saved
    assert main(["export", str(tmp / "model"), str(tmp / "m.onnx")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp / "model"), *images, "--top-k", "2"]) == 0
    torch_lines = capsys.readouterr().out.splitlines()
    assert main(["predict", str(tmp / "m.onnx"), *images, "--top-k", "2"]) == 0
    onnx_lines = capsys.readouterr().out.splitlines()
    for a, b in zip(torch_lines, onnx_lines):
        ta, tb = a.split("\t"), b.split("\t")
        assert ta[::2] == tb[::2]  # path and class names
        assert [float(v) for v in ta[2::2]] == pytest.approx([float(v) for v in tb[2::2]],
                                                             abs=1e-4)


def test_predict_explain_writes_one_overlay_per_image(saved, capsys):
    tmp, _, images = saved
    assert main(["predict", str(tmp / "model"), *images, "--explain", str(tmp / "cam")]) == 0
    out = capsys.readouterr().out
    assert out.count("\tgradcam\t") == 2
    for p in images:
        png = tmp / "cam" / (p.rsplit("/", 1)[-1].replace(".png", ".gradcam.png"))
        assert Image.open(png).size == (16, 16)  # the model's input size
