"""Every script in examples/ runs with --tiny, in-process, and gives a sensible report."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_are_the_documented_ones() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert names == ["custom_head.py", "image_folder.py", "quickstart.py", "vgg16_classic.py"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_example_runs_tiny(path: Path, tmp_path, monkeypatch, capsys) -> None:
    import transferkit as tk

    calls = []
    real = tk.finetune

    def spy(model, *args, **options):  # record how the example trains
        calls.append(dict(options, model=model))
        return real(model, *args, **options)

    monkeypatch.setattr(tk, "finetune", spy)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' temp folders
    monkeypatch.setattr(sys, "argv", [str(path), "--tiny"])
    report = _load(path).main(["--tiny"])
    out = capsys.readouterr().out
    assert report.task == "multiclass" and report.n_samples > 0
    assert 0.0 <= report.accuracy <= 1.0
    assert "accuracy" in out and len(calls) == 1
    if path.stem == "vgg16_classic":  # the article's recipe, exactly
        options, model = calls[0], calls[0]["model"]
        assert model.backbone.name == "vgg16" and model.head_name == "vgg_classifier"
        assert model.num_classes == 10
        assert (options["optimizer"], options["lr"], options["momentum"]) == ("sgd", 0.001, 0.9)
        assert options["strategy"] == "full" and options.get("task", "multiclass") == "multiclass"


def test_vgg16_classic_offline_message(monkeypatch, tmp_path, capsys) -> None:
    """Without the cached weights and offline, the example stops with where to put them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        _load(EXAMPLES / "vgg16_classic.py").main([])
    assert "vgg16-397923af.pth" in str(exc.value.code)
    assert str(tmp_path) in str(exc.value.code)


def test_custom_head_is_registered_and_listed() -> None:
    import transferkit as tk

    _load(EXAMPLES / "custom_head.py")
    assert "gem_linear" in tk.list_heads()
    assert tk.get_head_spec("gem_linear").needs_map
