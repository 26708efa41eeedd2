"""``transferkit finetune --strategy lora``: the --lora-* options reach finetune's lora_* options,
a tiny run trains adapters and saves a plain (merged) model; lora options without
--strategy lora are a one-line error."""

from __future__ import annotations

import json
import sys

import pytest

from transferkit.cli import main
from transferkit.training.strategies import STRATEGIES

TINY = ["--data", "digits", "--n-per-class", "2", "--n-per-class-test", "1", "--backbone",
        "resnet18", "--weights", "none", "--epochs", "1", "--image-size", "32",
        "--batch-size", "16", "--no-progress"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cli_offers_every_strategy(strategy) -> None:
    from transferkit.cli.main import build_parser

    args = build_parser().parse_args(["finetune", "--data", "digits", "--strategy", strategy])
    assert args.strategy == strategy


def test_finetune_strategy_lora_runs_with_its_options(capsys, monkeypatch, tmp_path) -> None:
    pytest.importorskip("peft", reason="strategy='lora' needs the lora extra (peft)")
    import transferkit as tk

    real = sys.modules["transferkit.finetune"].finetune
    seen: dict = {}

    def spy(model, *args, **options):
        history = real(model, *args, **options)
        seen["options"] = options
        seen["ranks"] = {m.r["default"] for m in model.modules() if hasattr(m, "lora_A")}
        seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
        return history

    monkeypatch.setattr(sys.modules["transferkit.finetune"], "finetune", spy)
    out = tmp_path / "lora"
    status = main(["finetune", *TINY, "--strategy", "lora", "--lora-rank", "2",
                   "--lora-alpha", "4", "--lora-dropout", "0.1", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 0, err
    opts = seen["options"]
    assert (opts["strategy"], opts["lora_rank"], opts["lora_alpha"], opts["lora_dropout"]) == (
        "lora", 2, 4.0, 0.1)
    assert "lora_merge" not in opts and "lora_targets" not in opts  # defaults left to finetune
    assert seen["ranks"] == {2}  # the adapters peft built have the CLI's rank
    assert seen["trainable"] and all("lora_" in n or n.startswith("head.")
                                     for n in seen["trainable"])
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [0]
    model = tk.load(out / "model")  # saved merged: a plain model, no adapters
    assert not any("lora_" in n for n, _ in model.named_parameters())


def test_lora_options_need_strategy_lora(capsys, tmp_path) -> None:
    status = main(["finetune", *TINY, "--strategy", "full", "--lora-rank", "2",
                   "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("transferkit: error: ")
    assert "lora_rank" in err[-1] and "strategy='lora'" in err[-1]
