"""``transferkit demo --tiny``: the three strategies, the table, and every output file."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.cli.demo import STRATEGIES, DemoConfig


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "runs"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--tiny", "--out", str(out), "--no-progress"])
    assert status == 0
    return out, printed.getvalue()


def test_demo_prints_a_table_of_the_three_strategies(demo_run) -> None:
    _, printed = demo_run
    header = next(line for line in printed.splitlines() if line.startswith("strategy"))
    for column in ("test acc", "macro F1", "train s", "train img/s", "test img/s"):
        assert column in header
    rows = [line.split()[0] for line in printed.splitlines()
            if line.split() and line.split()[0] in STRATEGIES]
    assert rows == list(STRATEGIES)
    assert "Wall time" in printed


def test_demo_writes_report_figures_and_model(demo_run) -> None:
    out, _ = demo_run
    assert {p.name for p in out.iterdir()} == {
        "report.json", "learning_curves.png", "confusion_matrix.png", "model.safetensors",
        "model.json"}
    for png in ("learning_curves.png", "confusion_matrix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_report_states_split_scores_and_choice(demo_run) -> None:
    out, _ = demo_run
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == list(STRATEGIES)
    assert "split_seed=0" in report["data"]["split"] and "stratified" in report["data"]["split"]
    assert report["data"]["n_train"] + report["data"]["n_val"] == 40  # 4 per class
    for name, r in report["results"].items():
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
        assert r["train_seconds"] > 0 and r["train_images_per_second"] > 0
        assert r["report"]["n_samples"] == 30 and len(r["history"]) >= 1
    assert report["results"]["scratch"]["weights"].startswith("none")
    phases = [h["phase"] for h in report["results"]["lp_ft"]["history"]]
    assert phases[0] == "probe" and phases[-1] == "finetune"
    best = max(report["results"].values(), key=lambda r: r["val_accuracy"])
    assert report["best"] == best["strategy"]
    assert report["wall_seconds"] > 0 and report["table"][0].startswith("strategy")


def test_demo_model_loads_back_and_predicts_animals(demo_run) -> None:
    out, _ = demo_run
    model = tk.load(out / "model")
    report = json.loads((out / "report.json").read_text())
    assert model.class_names == report["data"]["classes"]
    assert model.data_config.crop_size == 32
    from transferkit.datasets import animal_mnist

    test = animal_mnist(n_per_class=2, n_per_class_test=3).test
    preds = tk.predict(model, test.data[:4], preprocess=True)
    assert all(p.class_name in model.class_names for p in preds)
    # The saved model is the one that was scored: same test accuracy as in the report.
    best = report["results"][report["best"]]
    again = tk.evaluate(model, test, progress=False)
    assert again.accuracy == pytest.approx(best["test_accuracy"])


def test_demo_config_checks_its_options() -> None:
    with pytest.raises(ValueError, match="image_size"):
        DemoConfig(image_size=8)
    with pytest.raises(ValueError, match="strategies"):
        DemoConfig(strategies=["linear_probe", "magic"])
    with pytest.raises(TypeError, match="epochs"):
        DemoConfig(epochs=1.5)
    assert DemoConfig(tiny=True).image_size == 32


def test_segmentation_demo_config_checks_its_options() -> None:
    from transferkit.cli.demo_segmentation import SegDemoConfig

    with pytest.raises(ValueError, match=r"loss 'focal' does not apply to task 'segmentation'"):
        SegDemoConfig(loss="focal")
    with pytest.raises(ValueError, match=r"image_size must be an int in \[32, 256\], got 16"):
        SegDemoConfig(image_size=16)
    with pytest.raises(ValueError, match=r"demo segmentation: epochs must be an int >= 1, got 0"):
        SegDemoConfig(epochs=0)
    with pytest.raises(TypeError, match=r"n_scenes must be an int >= 1, got 2\.5"):
        SegDemoConfig(n_scenes=2.5)
    with pytest.raises(ValueError, match="datasets must be a non-empty subset"):
        SegDemoConfig(datasets=("cityscapes",))
    assert SegDemoConfig(loss="ce+dice").loss == "ce+dice"


def test_demo_runs_the_segmentation_demo_too(demo_run) -> None:
    """`transferkit demo` (no subcommand) runs the segmentation demo into <out>-segmentation/."""
    out, printed = demo_run
    seg = out.parent / f"{out.name}-segmentation"
    report = json.loads((seg / "report.json").read_text())
    runs = {(r["dataset"], r["weights"] == "ImageNet") for r in report["results"]}
    assert runs == {(d, p) for d in ("nuclei", "animal_scenes") for p in (True, False)}
    for r in report["results"]:
        assert 0 <= r["mean_iou"] <= 1 and r["train_seconds"] > 0
    assert (seg / "nuclei_model.safetensors").exists()
    assert "Segmentation:" in printed


def test_demo_runs_are_reproducible_whatever_ran_before(tmp_path) -> None:
    """The same seed gives the same figures, also after other code drew random numbers
    (each strategy's random weights are drawn from the seed, not the global state)."""
    import torch

    from transferkit.cli.demo import run_demo

    def figures(out, draw):
        torch.rand(draw)  # another amount of the global random state used before
        r = run_demo(DemoConfig(tiny=True, strategies=("linear_probe", "scratch"),
                                out_dir=str(out), progress=False))
        return [(s.strategy, s.test_accuracy, [h["train_loss"] for h in s.history])
                for s in r.results]

    first = figures(tmp_path / "a", 3)
    assert first == figures(tmp_path / "b", 1000)
