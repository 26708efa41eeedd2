"""finetune: the hand-written loop reproduced, strategies, resume, bad input."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import transferkit as tk
from transferkit.errors import DataError, TrainingError

from _synthetic import patterns, tiny_model

FAST = dict(progress=False, augment=False, batch_size=16)


def test_reproduces_the_hand_written_loop():
    """SGD lr 0.001 momentum 0.9, cross-entropy, constant schedule, same batches."""
    X, y = patterns(64, size=16)
    model = tiny_model()
    plain = copy.deepcopy(model)
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=False)

    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.001, momentum=0.9)
    plain.train()
    for _ in range(2):
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = criterion(plain(inputs), labels)
            loss.backward()
            optimizer.step()

    tk.finetune(model, loader, epochs=2, strategy="full", optimizer="sgd", lr=0.001,
                weight_decay=0.0, schedule="constant", progress=False)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("strategy", ["full", "linear_probe", "lp_ft", "gradual"])
def test_each_strategy_learns(strategy):
    X, y = patterns(96, size=16)
    Xv, yv = patterns(48, size=16, seed=1)
    model = tiny_model()
    lr = 0.05 if strategy == "linear_probe" else 0.01  # a probe on random features
    h = tk.finetune(model, (X, y), (Xv, yv), epochs=4, strategy=strategy, lr=lr,
                    probe_epochs=4, **FAST)
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["val_accuracy"][-1] >= 0.9
    assert set(h[0]) >= {"epoch", "phase", "train_loss", "train_accuracy", "val_loss",
                         "val_accuracy", "lr", "seconds", "images_per_second"}


def test_linear_probe_leaves_backbone_bit_identical():
    X, y = patterns(48, size=16)
    model = tiny_model()
    before = copy.deepcopy(model.backbone.state_dict())
    tk.finetune(model, (X, y), epochs=2, strategy="linear_probe", cache_features=False,
                **FAST)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("bn", ["eval", "train"])
def test_lp_ft_second_phase_keeps_the_batchnorm_statistics_the_probe_saw(bn):
    """With bn="eval" every BatchNorm of the backbone normalises with its running statistics
    in both phases (so the features under the probe's head do not jump when the backbone
    starts to train) while its weights still train; bn="train" uses batch statistics."""
    X, y = patterns(48, size=16)
    model = tiny_model()
    bns = {n: m for n, m in model.backbone.named_modules() if isinstance(m, nn.BatchNorm2d)}
    before = {n: (m.running_mean.clone(), m.running_var.clone(), m.weight.detach().clone())
              for n, m in bns.items()}
    modes: list[tuple[str, bool]] = []
    for m in bns.values():
        m.register_forward_hook(lambda mod, i, o: modes.append(("batch", mod.training)))
    tk.finetune(model, (X, y), epochs=2, probe_epochs=1, strategy="lp_ft", bn=bn,
                cache_features=False, **FAST)
    training_modes = {t for _, t in modes}
    for n, m in bns.items():
        mean, var, weight = before[n]
        assert not torch.equal(m.weight, weight), n  # the affine weights trained
        kept = torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
        assert kept == (bn == "eval"), n
    assert training_modes == {bn == "train"}  # one mode through both phases


def test_lp_ft_changes_backbone_only_in_second_phase():
    X, y = patterns(48, size=16)
    model = tiny_model()
    before = copy.deepcopy(model.backbone.state_dict())
    snapshots = []

    class Watch:
        def on_epoch_end(self, trainer, record):
            changed = any(not torch.equal(v, before[k])
                          for k, v in trainer.model.backbone.state_dict().items())
            snapshots.append((record["phase"], changed))

    tk.finetune(model, (X, y), epochs=2, probe_epochs=2, strategy="lp_ft",
                callbacks=[Watch()], **FAST)
    assert [p for p, _ in snapshots] == ["probe", "probe", "finetune", "finetune"]
    assert [c for _, c in snapshots] == [False, False, True, True]


def test_gradual_unfreezes_one_stage_per_epoch():
    X, y = patterns(32, size=16)
    model = tiny_model()
    seen = []

    class Watch:
        def on_epoch_start(self, trainer, epoch):
            bb = trainer.model.backbone
            seen.append([all(p.requires_grad for _, p in bb.stage_parameters(s))
                         for s in bb.stage_names])

    tk.finetune(model, (X, y), epochs=3, strategy="gradual", callbacks=[Watch()], **FAST)
    # stages are (stem, body): epoch 0 head only, then body, then both
    assert seen == [[False, False], [False, True], [True, True]]


def test_same_call_twice_gives_same_weights():
    X, y = patterns(48, size=16)
    a, b = tiny_model(), tiny_model()
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        tk.finetune(m, (X, y), epochs=2, strategy="full", seed=3, deterministic=True,
                    progress=False, batch_size=16)  # augmentation on: seeded too
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_early_stopping_restores_best_weights():
    X, y = patterns(48, size=16)
    Xv, yv = patterns(24, size=16, seed=1)
    model = tiny_model()
    states = []

    class Keep:
        def on_epoch_end(self, trainer, record):
            states.append(copy.deepcopy(trainer.model.state_dict()))

    h = tk.finetune(model, (X, y), (Xv, yv), epochs=8, strategy="full", lr=0.5,
                    optimizer="sgd", early_stopping=tk.EarlyStopping("val_loss", patience=1),
                    callbacks=[Keep()], **FAST)
    best = min(range(len(h)), key=lambda i: h["val_loss"][i])
    assert h.best_epoch == h[best]["epoch"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[best][k]), k


def test_amp_and_accumulation_and_clipping_run():
    X, y = patterns(32, size=16)
    h = tk.finetune(tiny_model(), (X, y), epochs=1, strategy="full", amp=True,
                    grad_accum_steps=2, clip_grad_norm=1.0, schedule="onecycle",
                    **FAST)
    assert len(h) == 1 and h[0]["train_loss"] > 0


def test_multilabel_and_regression_tasks():
    X, y = patterns(32, size=16)
    multi = torch.nn.functional.one_hot(y, 3).float()
    h = tk.finetune(tiny_model(), (X, multi), epochs=2, strategy="full", task="multilabel",
                    lr=0.01, **FAST)
    assert h["train_loss"][-1] < h["train_loss"][0]
    target = y.float()
    h = tk.finetune(tiny_model(1), (X, target), epochs=2, strategy="full",
                    task="regression", lr=0.01, **FAST)
    assert h[0]["train_accuracy"] is None and h["train_loss"][-1] < h["train_loss"][0]


def test_image_folder_input(tmp_path):
    from PIL import Image

    X, y = patterns(12, size=16)
    for i, (img, label) in enumerate(zip(X, y)):
        d = tmp_path / f"class{int(label)}"
        d.mkdir(exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).save(d / f"{i}.png")
    h = tk.finetune(tiny_model(), str(tmp_path), epochs=1, strategy="full", num_workers=0,
                    progress=False)
    assert len(h) == 1


def test_grayscale_is_repeated_to_rgb():
    X, y = patterns(32, size=16)
    h = tk.finetune(tiny_model(), (X[:, :1], y), epochs=1, strategy="full", **FAST)
    assert len(h) == 1


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    import transferkit as tk
    from _synthetic import patterns, tiny_model

    class KillAfter2:
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)
    X, y = patterns(48, size=16)
    model = tiny_model()
    model.load_state_dict(torch.load({init!r}, weights_only=True))
    tk.finetune(model, (X, y), epochs=4, strategy="full", optimizer="sgd", lr=0.05,
                checkpoint_dir={ckpt!r}, progress=False, batch_size=16,
                channels_last=False, callbacks=[KillAfter2()])
""")


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    X, y = patterns(48, size=16)
    init = tiny_model()
    torch.save(init.state_dict(), tmp_path / "init.pt")
    opts = dict(epochs=4, strategy="full", optimizer="sgd", lr=0.05, progress=False,
                batch_size=16, channels_last=False)  # augmentation on: its random state must
    # be restored too; the format fixed: "auto" may pick differently in the killed process

    reference = tiny_model()
    reference.load_state_dict(init.state_dict())
    tk.finetune(reference, (X, y), **opts)

    script = tmp_path / "killed.py"
    ckpt = str(tmp_path / "ckpt")
    script.write_text(_KILL_SCRIPT.format(tests=os.path.dirname(__file__),
                                          init=str(tmp_path / "init.pt"), ckpt=ckpt))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # killed by SIGKILL, not an exception
    assert os.listdir(ckpt) == ["last.pt"]  # atomic: no temporary file left behind

    resumed = tiny_model()
    resumed.load_state_dict(init.state_dict())
    h = tk.finetune(resumed, (X, y), checkpoint_dir=ckpt, resume=True, **opts)
    assert h["epoch"] == [0, 1, 2, 3]
    for (k, a), b in zip(resumed.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


# -- bad input fails before any training step ---------------------------------------------
class _NoStep:
    def on_batch_end(self, *a):
        raise AssertionError("a training step ran")


def _fails(data, match, exc=DataError, model=None, **kw):
    opts = {"epochs": 1, "callbacks": [_NoStep()], **FAST, **kw}
    with pytest.raises(exc, match=match):
        tk.finetune(model or tiny_model(), data, **opts)


def test_labels_out_of_range():
    X, y = patterns(12, size=16)
    _fails((X, y + 2), r"Labels must be in \[0, 3\) for a head with 3 classes; found \[3, 4\]")


def test_class_count_differs_from_head():
    from transferkit.datasets import TensorImageDataset

    X, y = patterns(12, size=16)
    ds = TensorImageDataset(X, y, classes=["a", "b", "c", "d"])
    _fails(ds, r"The data has 4 classes .* but the head has 3 outputs")


def test_empty_dataset():
    _fails((torch.zeros(0, 3, 16, 16), torch.zeros(0, dtype=torch.long)), "dataset is empty")


def test_nan_inputs():
    X, y = patterns(12, size=16)
    X[5, 0, 0, 0] = float("nan")
    _fails((X, y), r"NaN or infinite values \(first bad samples: \[5\]\)")


def test_wrong_channel_count():
    X, y = patterns(12, size=16)
    _fails((torch.cat([X, X[:, :1]], 1), y), "Images have 4 channels but the backbone takes 3")


def test_bad_options():
    X, y = patterns(12, size=16)
    _fails((X, y), "strategy must be one of", ValueError, strategy="probe")
    _fails((X, y), "epochs must be an int >= 1, got 0", ValueError, epochs=0)
    _fails((X, y), "Known options", TypeError, learning_rate=0.1)
    with pytest.raises(TypeError, match="model must be a TransferModel"):
        tk.finetune(torch.nn.Linear(2, 2), (X, y))


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    X, y = patterns(32, size=16)
    model = tiny_model()
    ckpt = tmp_path / "ck"

    class Poison:
        def on_epoch_end(self, trainer, record):
            with torch.no_grad():
                trainer.model.head[-1].weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match="The loss became nan at epoch 2"):
        tk.finetune(model, (X, y), epochs=3, strategy="full", checkpoint_dir=ckpt,
                    callbacks=[Poison()], **FAST)
    state = torch.load(ckpt / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert torch.isfinite(state["model"]["head.2.weight"]).all()


def test_last_partial_accumulation_still_steps():
    X, y = patterns(80, size=16)  # 5 batches of 16, accumulated by 2: 3 optimiser steps
    steps = []

    class Count:
        def on_epoch_end(self, trainer, record):
            steps.append(trainer.scheduler.last_epoch)

    tk.finetune(tiny_model(), (X, y), epochs=1, strategy="full", grad_accum_steps=2,
                callbacks=[Count()], **FAST)
    assert steps == [3]
