"""Feature caching: the cached run trains the same head, the backbone runs once per sample,
never when caching does not apply, and evaluate reuses the validation cache only while it
provably holds. Also the fast paths: persistent seeded workers, compile=True."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import transferkit as tk
from transferkit.data.sources import BatchPrep, as_source

from _synthetic import patterns, tiny_model

# channels_last fixed: "auto" would time a few extra forwards, which the pass counts here see
FAST = dict(progress=False, batch_size=8, lr=0.05, channels_last=False)
HEADS = {  # head -> options; pooled caches for the first three, the map for vgg_classifier
    "linear": {"dropout": 0.2},
    "cosine": {},
    "mlp": {"hidden": 8, "dropout": 0.3},
    "vgg_classifier": {"hidden": 8, "pool_size": 2},
}


def _data(n: int = 24, m: int = 12):
    return patterns(n, size=16), patterns(m, size=16, seed=1)


def _count_backbone(model: tk.TransferModel) -> list[int]:
    """Count the samples that go through ``model.backbone.forward_features``."""
    seen = [0]
    inner = model.backbone.forward_features

    def counted(x):
        seen[0] += len(x)
        return inner(x)

    model.backbone.forward_features = counted  # instance attribute: TransferModel calls it
    return seen


class _Keep:
    """Callback that keeps the trainer, to look at its caches after each epoch."""

    def __init__(self) -> None:
        self.records, self.caches, self.val_caches = [], [], []

    def on_epoch_end(self, trainer, record):
        self.records.append(record)
        self.caches.append(trainer.cache)
        self.val_caches.append(trainer.val_cache)


def _pair(head: str, **opts):
    """Two copies of one model, trained with and without the cache; returns both + histories."""
    (X, y), val = _data()
    a = tiny_model(head=head, **HEADS[head])
    b = tiny_model(head=head, **HEADS[head])
    b.load_state_dict(a.state_dict())
    run = dict(epochs=3, strategy="linear_probe", augment=False, seed=5, **FAST, **opts)
    ha = tk.finetune(a, (X, y), val, **run)
    hb = tk.finetune(b, (X, y), val, cache_features=False, **run)
    return a, b, ha, hb


@pytest.mark.parametrize("head", list(HEADS))
def test_cached_head_equals_uncached_head(head):
    """Same seed, no augmentation: the same head weights and validation figures (dropout too)."""
    a, b, ha, hb = _pair(head)
    assert ha["cached"] == [True] * 3 and hb["cached"] == [False] * 3
    for (name, pa), pb in zip(a.head.state_dict().items(), b.head.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)
    torch.testing.assert_close(ha["val_loss"], hb["val_loss"])
    torch.testing.assert_close(ha["train_loss"], hb["train_loss"])


def test_float16_cache_trains_nearly_the_same_head():
    a, b, ha, hb = _pair("linear", cache_dtype="float16")
    assert ha["cached"] == [True] * 3
    for pa, pb in zip(a.head.parameters(), b.head.parameters()):
        torch.testing.assert_close(pa, pb, atol=2e-3, rtol=2e-3)


def test_map_cache_for_vgg_and_pooled_cache_for_linear():
    (X, y), _ = _data()
    shapes = {}
    for head in ("linear", "vgg_classifier"):
        keep = _Keep()
        tk.finetune(tiny_model(head=head, **HEADS[head]), (X, y), epochs=1, augment=False,
                    strategy="linear_probe", callbacks=[keep], **FAST)
        shapes[head] = tuple(keep.caches[0].features.shape)
    assert shapes["linear"] == (1, 24, 16)  # (views, N, C)
    assert shapes["vgg_classifier"] == (1, 24, 16, 8, 8)  # (views, N, C, H, W)


def test_cache_beyond_the_memory_budget_goes_to_disk_and_trains_the_same_head():
    (X, y), val = _data()
    a, b = tiny_model(), tiny_model()
    b.load_state_dict(a.state_dict())
    keep = _Keep()
    run = dict(epochs=2, strategy="linear_probe", augment=False, **FAST)
    tk.finetune(a, (X, y), val, cache_memory_budget=100, callbacks=[keep], **run)
    tk.finetune(b, (X, y), val, **run)
    cache = keep.caches[0]
    assert cache.on_disk and keep.val_caches[0].on_disk
    if os.name == "posix":  # unlinked at once: nothing is left behind, even after a crash
        assert not os.path.exists(cache.path)
    for pa, pb in zip(a.head.parameters(), b.head.parameters()):
        torch.testing.assert_close(pa, pb)


def test_budget_is_shared_by_train_and_validation_caches():
    (X, y), val = _data()
    keep = _Keep()
    per_sample = 16 * 4  # pooled float32 features of the tiny backbone
    tk.finetune(tiny_model(), (X, y), val, epochs=1, strategy="linear_probe", augment=False,
                cache_memory_budget=24 * per_sample, callbacks=[keep], **FAST)
    assert not keep.caches[0].on_disk  # the training cache fills the budget exactly
    assert keep.val_caches[0].on_disk


def test_backbone_runs_once_per_training_sample_when_caching_applies():
    (X, y), (Xv, yv) = _data(24, 12)
    model = tiny_model()
    seen = _count_backbone(model)
    h = tk.finetune(model, (X, y), (Xv, yv), epochs=4, strategy="linear_probe", augment=False,
                    **FAST)
    assert h["cached"] == [True] * 4
    assert seen[0] == 24 + 12  # once per training sample and once per validation sample


def test_lp_ft_caches_the_probe_phase_only():
    (X, y), (Xv, yv) = _data(24, 12)
    model = tiny_model()
    seen = _count_backbone(model)
    h = tk.finetune(model, (X, y), (Xv, yv), epochs=2, probe_epochs=2, strategy="lp_ft",
                    augment=False, **{**FAST, "lr": 1e-3})
    n_probe = h["phase"].count("probe")
    assert h["cached"] == [True] * n_probe + [False] * 2
    assert seen[0] == (24 + 12) + 2 * (24 + 12)


NOT_APPLICABLE = ["strategy_full", "bn_train", "dataloader", "augment_without_views",
                  "cache_features_off", "custom_transform"]


@pytest.mark.parametrize("case", NOT_APPLICABLE)
def test_backbone_runs_every_epoch_when_caching_does_not_apply(case):
    (X, y), (Xv, yv) = _data(24, 12)
    base = dict(epochs=2, strategy="linear_probe", augment=False)
    data, opts = {
        "strategy_full": ((X, y), {**base, "strategy": "full"}),
        "bn_train": ((X, y), {**base, "bn": "train"}),
        "dataloader": (DataLoader(TensorDataset(X, y), batch_size=8), base),
        "augment_without_views": ((X, y), {**base, "augment": True, "cache_views": 0}),
        "cache_features_off": ((X, y), {**base, "cache_features": False}),
        "custom_transform": (_Plain(X, y), {**base, "transform": lambda x: x}),
    }[case]
    val = _Plain(Xv, yv) if "transform" in opts else (Xv, yv)  # a transform takes datasets
    model = tiny_model()
    seen = _count_backbone(model)
    h = tk.finetune(model, data, val, **{**FAST, **opts})
    assert h["cached"] == [False, False]
    assert seen[0] == 2 * (24 + 12)


class _Plain(Dataset):
    """A dataset of ``(image tensor, label)`` samples (no ``.data``): the samples path."""

    def __init__(self, X, y, transform=None) -> None:
        self.X, self.y, self.transform = X, y, transform

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):
        x = self.X[i] if self.transform is None else self.transform(self.X[i])
        return x, int(self.y[i])


def test_bn_train_updates_running_statistics_of_a_frozen_backbone():
    (X, y), _ = _data()
    model = tiny_model()
    before = model.backbone.model.stem[1].running_mean.clone()
    tk.finetune(model, (X, y), epochs=1, strategy="linear_probe", bn="train", augment=False,
                **FAST)
    assert not torch.equal(before, model.backbone.model.stem[1].running_mean)


def test_skipped_cache_prints_one_line(capsys):
    (X, y), _ = _data()
    tk.finetune(tiny_model(), (X, y), epochs=1, strategy="linear_probe", augment=True,
                cache_views=0, **{**FAST, "progress": True})
    lines = [ln for ln in capsys.readouterr().err.splitlines()
             if ln.startswith("transferkit: feature cache")]  # not the progress bar's lines
    assert lines == ["transferkit: feature cache off: training data is augmented (pass "
                     "cache_views=K to cache K augmented views)."]


def test_cache_build_shows_progress_over_every_image(capsys, monkeypatch):
    (X, y), val = _data(24, 12)
    tk.finetune(tiny_model(), (X, y), val, epochs=1, strategy="linear_probe", augment=False,
                **{**FAST, "progress": True})
    assert "feature cache" not in capsys.readouterr().err  # stderr not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal
    tk.finetune(tiny_model(), (X, y), val, epochs=1, strategy="linear_probe", augment=False,
                **{**FAST, "progress": True})
    err = capsys.readouterr().err
    assert "feature cache:   0%|          | 0/24 " in err  # a bar over the training images
    assert "feature cache (val):   0%|          | 0/12 " in err
    tk.finetune(tiny_model(), (X, y), val, epochs=1, strategy="linear_probe", augment=False,
                **FAST)
    assert "feature cache" not in capsys.readouterr().err  # progress=False: silent


def test_cache_views_with_augmentation():
    """K augmented views, built once each (deterministically), epoch e training on view e % K."""
    (X, y), (Xv, yv) = _data(24, 12)
    heads, keeps = [], []
    init = tiny_model().state_dict()
    for _ in range(2):
        model = tiny_model()
        model.load_state_dict(init)
        seen = _count_backbone(model)
        keep = _Keep()
        h = tk.finetune(model, (X, y), (Xv, yv), epochs=4, strategy="linear_probe",
                        augment=True, cache_views=2, callbacks=[keep], **FAST)
        assert h["cached"] == [True] * 4
        assert seen[0] == 2 * 24 + 12  # each view of each sample once, validation once
        heads.append(model.head.state_dict())
        keeps.append(keep)
    cache = keeps[0].caches[0]
    assert cache.views == 2 and not torch.equal(cache.features[0], cache.features[1])
    torch.testing.assert_close(cache.features, keeps[1].caches[0].features, rtol=0, atol=0)
    for k, v in heads[0].items():
        torch.testing.assert_close(v, heads[1][k], msg=k)


def test_cache_view_follows_the_epoch(monkeypatch):
    from transferkit.training.feature_cache import FeatureCache

    views = []
    original = FeatureCache.batches

    def spy(self, order, **kw):
        if self.views == 3:
            views.append(kw.get("view", 0) % self.views)
        return original(self, order, **kw)

    monkeypatch.setattr(FeatureCache, "batches", spy)
    (X, y), _ = _data()
    tk.finetune(tiny_model(), (X, y), epochs=5, strategy="linear_probe", augment=True,
                cache_views=3, **FAST)
    assert views == [0, 1, 2, 0, 1]


# -- no hidden reuse by evaluate ----------------------------------------------------------------
def test_evaluate_after_a_probe_runs_the_model_and_agrees_with_the_history():
    """The validation cache lives only for its run: evaluate runs the backbone on the data,
    and its accuracy is the run's last validation accuracy (the explicit record)."""
    (X, y), (Xv, yv) = _data(24, 12)
    model = tiny_model()
    h = tk.finetune(model, (X, y), (Xv, yv), epochs=2, strategy="linear_probe", augment=False,
                    **FAST)
    assert h["cached"] == [True, True]
    seen = _count_backbone(model)
    report = tk.evaluate(model, (Xv, yv), progress=False)
    assert seen[0] == 12
    assert report.accuracy == pytest.approx(h["val_accuracy"][-1])


# -- data loading ------------------------------------------------------------------------------
def _flip_at_random(x):
    return x.flip(-1) if torch.rand(()) < 0.5 else x


@pytest.mark.parametrize("workers", [1, 2])
def test_persistent_workers_follow_the_order_and_seed_each_sample(workers):
    """One loader serves every pass; each pass follows its order; with workers, a sample's
    random transform depends on the pass seed, not on the number of workers."""
    X, y = patterns(12, size=16)
    cfg = tiny_model().backbone.data_config
    src = as_source(_Plain(X, y, transform=_flip_at_random), cfg, train=True)
    prep = BatchPrep(cfg, train=False)
    out = {}
    for k in (1, workers):
        torch.manual_seed(3)
        batches = [list(src.batches(order, batch_size=4, device=torch.device("cpu"), prep=prep,
                                    num_workers=k, persistent=True))
                   for order in ([5, 2, 7, 0], list(range(12))[::-1])]
        out[k] = batches
        assert torch.equal(batches[0][0][1], y[[5, 2, 7, 0]])
        assert torch.equal(torch.cat([b[1] for b in batches[1]]), y.flip(0))
    assert len(src._loaders) == 1 + (workers != 1)
    for a, b in zip(out[1], out[workers]):
        for (xa, _), (xb, _) in zip(a, b):
            torch.testing.assert_close(xa, xb, rtol=0, atol=0)


@pytest.mark.slow
def test_smoke_compile_runs_one_epoch_on_cpu():
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("cc") is None:
        pytest.skip("torch.compile's CPU backend needs a C++ compiler; none is installed")
    (X, y), _ = _data(16, 4)
    h = tk.finetune(tiny_model(), (X, y), epochs=1, strategy="full", compile=True,
                    augment=False, **FAST)
    assert len(h) == 1 and torch.isfinite(torch.tensor(h["train_loss"][0]))
