"""``transferkit lr-find``: the range test from the command line."""

from __future__ import annotations

import json

from transferkit.cli.main import main


def test_lr_find_prints_and_writes_the_suggestion(tmp_path, capsys) -> None:
    out = tmp_path / "lr.json"
    rc = main(["lr-find", "--data", "animal_mnist", "--n-per-class", "4", "--backbone",
               "resnet18", "--weights", "none", "--image-size", "32", "--num-steps", "30",
               "--batch-size", "8", "--no-progress", "--json", str(out)])
    assert rc == 0
    curve = json.loads(out.read_text())
    assert 1e-7 <= curve["suggestion"] <= 10 and len(curve["lrs"]) == len(curve["losses"])
    assert curve["lrs"] == sorted(curve["lrs"])
    assert f"suggested lr {curve['suggestion']:.3g}" in capsys.readouterr().out


def test_lr_find_bad_range_is_one_line_error(capsys) -> None:
    rc = main(["lr-find", "--data", "animal_mnist", "--start-lr", "1", "--end-lr", "0.1"])
    assert rc != 0
    assert capsys.readouterr().err.strip() == (
        "transferkit: error: --start-lr (1.0) must be below --end-lr (0.1)")
