"""The ``transferkit`` command: every subcommand, and one-line errors with exit status 2."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *fragments: str, code: int = 2) -> None:
    lines = err.strip().splitlines()
    assert status == code, err
    assert len(lines) == 1 and lines[0].startswith("transferkit: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# -- list -------------------------------------------------------------------------------------
def test_list_heads_prints_every_registered_head(capsys) -> None:
    import transferkit as tk

    status, out, _ = run(capsys, "list", "heads")
    assert status == 0 and out.split() == tk.list_heads()


def test_list_backbones_filters_with_a_wildcard(capsys) -> None:
    status, out, _ = run(capsys, "list", "backbones", "efficientnet_lite*")
    assert status == 0
    assert out.split() == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def test_list_backbones_details_is_a_table_of_facts(capsys) -> None:
    status, out, _ = run(capsys, "list", "backbones", "efficientnet_lite*", "--details")
    lines = out.splitlines()
    assert status == 0 and lines[0].split()[:3] == ["backbone", "features", "input"]
    assert lines[1].split() == ["efficientnet_lite0", "1280", "224", "IMAGENET1K", "4.7M",
                                "75.1", "0.41", "18.0", "yes"]
    assert len(lines) == 4
    status, _, err = run(capsys, "list", "heads", "--details")
    assert_one_line_error(status, err, "--details describes backbones")


def test_list_without_a_match_says_so(capsys) -> None:
    status, out, err = run(capsys, "list", "backbones", "nothing_like_this*")
    assert out == ""
    assert_one_line_error(status, err, "no backbones match 'nothing_like_this*'")


# -- bad input: one line, status 2, traceback only with --debug ------------------------------
@pytest.mark.parametrize("argv, fragments", [
    (["list", "backbone"], ["invalid choice: 'backbone'"]),
    ([], ["required: COMMAND"]),
    (["finetune"], ["--data"]),
    (["finetune", "--data", "digits", "--epochs", "0"], ["--epochs", "got 0"]),
    (["finetune", "--data", "digits", "--lr", "fast"], ["--lr", "'fast'"]),
    (["finetune", "--data", "no/such/dir"], ["'no/such/dir'", "digits"]),
    (["finetune", "--data", "digits", "--backbone", "resnet5"],
     ["Unknown backbone 'resnet5'", "resnet50"]),
    (["finetune", "--data", "digits", "--head", "linearr", "--weights", "none",
      "--backbone", "resnet18"], ["linear"]),
    (["finetune", "--data", "digits", "--backbone", "resnet18", "--weights", "missing.pth"],
     ["missing.pth", "does not exist"]),
    (["evaluate", "no/model", "--data", "digits"], ["No saved model at 'no/model'"]),
    (["predict", "no/model", "missing.png"], ["missing.png"]),
    (["demo", "--image-size", "16"], ["image_size", ">= 32"]),
    (["demo", "--strategies", "linear_probe,magic"], ["magic"]),
    (["demo", "--n-per-class", "900"], ["n_per_class", "[2, 800]", "got 900"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and all(isinstance(a, str) for a in v)
    else None)
def test_bad_input_is_one_line_on_stderr_with_status_2(capsys, tmp_path, monkeypatch, argv,
                                                       fragments) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *argv)
    assert_one_line_error(status, err, *fragments)


def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no/such/dir"):
        main(["finetune", "--data", "no/such/dir", "--debug"])
    with pytest.raises(FileNotFoundError):
        main(["--debug", "finetune", "--data", "no/such/dir"])


def test_a_training_failure_exits_1(capsys, monkeypatch, tmp_path) -> None:
    from transferkit import errors

    def explode(*args, **kwargs):
        raise errors.TrainingError("The loss became nan at epoch 1, batch 3; training stopped.")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.modules["transferkit.finetune"], "finetune", explode)
    status, _, err = run(capsys, "finetune", "--data", "digits", "--n-per-class", "2",
                         "--backbone", "resnet18", "--weights", "none")
    assert_one_line_error(status, err, "loss became nan", code=1)


# -- finetune -> evaluate -> predict ----------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A model fine-tuned by the CLI on a few digits (resnet18, random init, 32 px)."""
    out = tmp_path_factory.mktemp("cli") / "digits"
    status = main(["finetune", "--data", "digits", "--n-per-class", "3", "--n-per-class-test",
                   "2", "--backbone",
                   "resnet18", "--weights", "none", "--strategy", "full", "--epochs", "2",
                   "--image-size", "32", "--batch-size", "16", "--out", str(out),
                   "--no-progress"])
    assert status == 0
    return out


def test_finetune_writes_model_history_and_evaluation(trained: Path) -> None:
    import transferkit as tk

    assert {p.name for p in trained.iterdir()} == {
        "model.safetensors", "model.json", "history.json", "eval.json"}
    history = json.loads((trained / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1] and "val_accuracy" in history[0]
    report = json.loads((trained / "eval.json").read_text())
    assert report["n_samples"] == 20  # --n-per-class-test 2 of digits' test split
    model = tk.load(trained / "model")
    assert model.class_names == [str(d) for d in range(10)]
    assert model.data_config.crop_size == 32  # --image-size was recorded


def test_evaluate_prints_the_report_and_writes_json(trained: Path, capsys, tmp_path) -> None:
    status, out, _ = run(capsys, "evaluate", str(trained / "model"), "--data", "digits",
                         "--n-per-class", "2", "--json", str(tmp_path / "e.json"),
                         "--no-progress")
    assert status == 0 and "accuracy" in out
    assert json.loads((tmp_path / "e.json").read_text())["n_samples"] == 20


def _write_pngs(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    from transferkit.datasets import digits

    test = digits(n_per_class_test=1).test
    paths = []
    for i in range(n):
        path = folder / f"d{i}.png"
        Image.fromarray((test.data[i, 0] * 255).byte().numpy(), mode="L").save(path)
        paths.append(path)
    return paths


def test_predict_prints_one_line_per_image(trained: Path, capsys, tmp_path) -> None:
    paths = _write_pngs(tmp_path, 3)
    status, out, _ = run(capsys, "predict", str(trained / "model"), *map(str, paths),
                         "--top-k", "2")
    lines = out.strip().splitlines()
    assert status == 0 and len(lines) == 3
    for path, line in zip(paths, lines):
        fields = line.split("\t")
        assert fields[0] == str(path) and len(fields) == 5
        assert fields[1] in [str(d) for d in range(10)]
        assert 0 <= float(fields[2]) <= 1 and float(fields[2]) >= float(fields[4])


def test_predict_refuses_a_file_that_is_not_an_image(trained: Path, capsys, tmp_path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    status, _, err = run(capsys, "predict", str(trained / "model"), str(bad))
    assert_one_line_error(status, err, "notes.png")


@pytest.mark.parametrize("layout", ["train_val", "flat"])
def test_finetune_on_an_image_folder(layout: str, capsys, tmp_path) -> None:
    root = tmp_path / "pics"
    for split in (["train", "val"] if layout == "train_val" else [""]):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            _write_pngs(root / split / cls, 4)
    status, out, err = run(capsys, "finetune", "--data", str(root), "--backbone", "resnet18",
                           "--weights", "none", "--epochs", "1", "--strategy", "full",
                           "--image-size", "32", "--out", str(tmp_path / "out"),
                           "--no-progress", "--val-fraction", "0.25")
    assert status == 0, err
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["class_names"] == ["a", "b"]
    assert report["n_samples"] == (8 if layout == "train_val" else 2)


# -- the program as installed -----------------------------------------------------------------
def test_python_dash_m_runs_the_cli_and_errors_in_one_line(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "transferkit", "finetune", "--data", "nope"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "transferkit: error: --data 'nope' is neither an image folder nor a built-in dataset "
        "(animal_mnist, fashion_mnist, digits)."]


@pytest.mark.slow
def test_console_script_is_installed(tmp_path) -> None:
    script = shutil.which("transferkit", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("transferkit is not installed with its console script here")
    done = subprocess.run([script, "list", "heads"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "linear" in done.stdout.split()


@pytest.mark.slow
def test_finetune_under_torchrun_writes_once(tmp_path) -> None:
    """Two processes (gloo): both train, rank 0 alone prints and writes."""
    pytest.importorskip("torch.distributed.run")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "transferkit", "finetune", "--data", "digits", "--n-per-class", "2",
         "--backbone", "resnet18", "--weights", "none", "--strategy", "full", "--epochs", "1",
         "--image-size", "32", "--batch-size", "4", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("evaluated on") == 1
    assert (out / "model.json").is_file() and (out / "eval.json").is_file()


class _Execed(Exception):
    pass


@pytest.fixture()
def as_program(monkeypatch):
    """main() as `python -m transferkit` runs it (argv from sys.argv), with os.execv and the
    two wait-policy measurements recorded; returns (set_rates, execs, probes)."""
    from transferkit.cli import openmp

    execs, probes, rates = [], [], {}

    def fake_execv(path, args):
        execs.append((path, list(args), os.environ.get("OMP_WAIT_POLICY")))
        raise _Execed

    monkeypatch.setattr(openmp, "_program_argv", None)
    monkeypatch.setattr(openmp, "_default_rate",
                        lambda s: probes.append("default") or rates["default"])
    monkeypatch.setattr(openmp, "_passive_rate",
                        lambda s: probes.append("passive") or rates["passive"])
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "execv", fake_execv)

    def set_rates(argv, default=3.0, passive=12.0):
        rates.update(default=default, passive=passive)
        monkeypatch.setattr(sys, "argv", ["transferkit", *argv])
    return set_rates, execs, probes


@pytest.mark.parametrize("default_rate, passive_rate, restarts", [
    (3.0, 12.0, True),     # busy cores: PASSIVE trains faster, restart with it
    (10.0, 10.0, True),    # a tie: PASSIVE, the safe choice on shared cores
    (12.0, 9.0, False),    # idle cores: the default is faster, no restart
    (12.0, None, True)])   # the PASSIVE measurement failed: PASSIVE
def test_demo_restarts_with_the_measured_openmp_policy(
        as_program, monkeypatch, capsys, default_rate, passive_rate, restarts) -> None:
    """Run as a program, demo measures both wait policies once its options are checked and
    re-execs itself with OMP_WAIT_POLICY=PASSIVE unless the default trained faster."""
    set_rates, execs, probes = as_program
    ran = []
    monkeypatch.setattr("transferkit.cli.demo_image2image.run_image2image_demo",
                        lambda cfg: ran.append(cfg) or pytest.skip("reached the run"))
    argv = ["demo", "image2image", "--tiny"]
    set_rates(argv, default_rate, passive_rate)
    if restarts:
        with pytest.raises(_Execed):
            main()
        assert execs == [(sys.executable, [sys.executable, "-m", "transferkit", *argv],
                          "PASSIVE")] and ran == []
    else:
        with pytest.raises(pytest.skip.Exception):
            main()
        assert execs == [] and "OMP_WAIT_POLICY" not in os.environ and len(ran) == 1
    assert probes == ["default", "passive"]
    err = capsys.readouterr().err  # the one line that says what was measured
    assert f"{default_rate:.1f} steps/s with the default policy" in err
    assert ("PASSIVE measurement failed" in err) == (passive_rate is None)


@pytest.mark.parametrize("argv", [
    ["finetune", "--data", "no/such/dir"], ["demo", "--image-size", "16"],
    ["demo", "--n-per-class", "900"], ["finetune", "--data", "digits", "--backbone", "resnet5"],
    ["list", "heads"], ["demo", "--help"]])
def test_bad_input_and_other_commands_measure_nothing(as_program, capsys, argv) -> None:
    """Bad input fails at once, before the measurement; other commands never measure."""
    set_rates, execs, probes = as_program
    set_rates(argv)
    with pytest.raises(SystemExit) if "--help" in argv else contextlib.nullcontext():
        assert main() == (0 if argv[0] == "list" else 2)
    assert execs == [] and probes == []
    assert "OpenMP" not in capsys.readouterr().err


def test_finetune_measures_after_its_model_is_built(as_program, tmp_path, monkeypatch) -> None:
    set_rates, execs, probes = as_program
    monkeypatch.chdir(tmp_path)
    set_rates(["finetune", "--data", "digits", "--n-per-class", "2", "--backbone", "resnet18",
               "--weights", "none", "--image-size", "32"])
    with pytest.raises(_Execed):
        main()
    assert probes == ["default", "passive"] and execs[0][2] == "PASSIVE"
    assert not list(tmp_path.rglob("*.json"))  # nothing trained or written before the restart


def test_a_policy_the_user_chose_is_kept(as_program, monkeypatch, capsys) -> None:
    set_rates, execs, probes = as_program
    monkeypatch.setattr("transferkit.cli.demo_image2image.run_image2image_demo",
                        lambda cfg: pytest.skip("reached the run"))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    set_rates(["demo", "image2image", "--tiny"])
    with pytest.raises(pytest.skip.Exception):
        main()
    assert execs == [] and probes == [] and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_distributed_ranks_take_passive_without_measuring(as_program, monkeypatch) -> None:
    from transferkit.cli import openmp

    _, execs, probes = as_program
    monkeypatch.setattr(openmp, "_program_argv", ["finetune", "--data", "x"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(_Execed):
        openmp.restart_before_training()
    assert probes == [] and execs[0][2] == "PASSIVE"


def test_called_from_python_never_restarts(as_program) -> None:
    from transferkit.cli import openmp

    _, execs, probes = as_program
    openmp.restart_before_training()  # main(argv) from Python does not record a program
    assert execs == [] and probes == []


def test_openmp_probe_measures_in_this_process_and_a_child() -> None:
    """The real probe: a rate in this process and one from a child run under PASSIVE."""
    from transferkit.cli import openmp

    import torch

    state = torch.random.get_rng_state()
    assert openmp._default_rate(0.05) > 0
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    rate = openmp._passive_rate(0.05)
    assert rate is not None and rate > 0
