"""cross_validate: folds as scikit-learn draws them, one fresh model per fold, mean and std."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold, StratifiedKFold
from torch.utils.data import Dataset, Subset, TensorDataset

import transferkit as tk
from transferkit.cross_validate import CrossValidationResult, cross_validate
from transferkit.errors import DataError

# ``transferkit.cross_validate`` may name the function once the package re-exports it; the
# module itself is always in sys.modules.
cv_module = importlib.import_module("transferkit.cross_validate")


def _build() -> tk.TransferModel:
    backbone = tk.load_backbone("resnet18")
    backbone.data_config = backbone.data_config.with_image_size(32)
    return tk.replace_head(backbone, num_classes=3)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 3, 32, 32, generator=g)
    y = torch.tensor([0] * 12 + [1] * 8 + [2] * 4)  # imbalanced: stratification shows
    return X, y


@pytest.fixture
def calls(monkeypatch):
    """Replace the trainer with a stub that records what each fold trained on."""
    seen: list[dict] = []

    def stub(model, train_data, **options):
        seen.append({"model": model, "data": train_data, "options": options})
        return f"history {len(seen)}"

    monkeypatch.setattr(cv_module, "_finetune", stub)
    return seen


def test_stratified_folds_equal_sklearn_and_partition_the_data(data, calls):
    X, y = data
    cv = cross_validate(_build, (X, y), k=4, seed=3, epochs=2, progress=False)
    expected = StratifiedKFold(4, shuffle=True, random_state=3).split(np.zeros(24), y.numpy())
    for (tr, va), (etr, eva) in zip(cv.folds, expected):
        np.testing.assert_array_equal(tr, etr)
        np.testing.assert_array_equal(va, eva)
        assert np.bincount(y[va].numpy(), minlength=3).tolist() == [3, 2, 1]
    assert sorted(np.concatenate([va for _, va in cv.folds]).tolist()) == list(range(24))
    assert len(calls) == 4 and len({id(c["model"]) for c in calls}) == 4  # a fresh model each
    for c, (tr, _) in zip(calls, cv.folds):
        assert torch.equal(c["data"][1], y[torch.as_tensor(tr)])
        assert c["options"] == {"epochs": 2, "progress": False}
    assert cv.histories == ["history 1", "history 2", "history 3", "history 4"]
    assert [r.n_samples for r in cv.reports] == [6, 6, 6, 6]


def test_mean_and_std_over_fold_reports(data, calls):
    cv = cross_validate(_build, data, k=3, progress=False)
    assert isinstance(cv, CrossValidationResult)
    for name in ("loss", "accuracy", "macro_f1", "ece"):
        values = [r.metrics[name] for r in cv.reports]
        assert cv.mean[name] == pytest.approx(np.mean(values))
        assert cv.std[name] == pytest.approx(np.std(values))
    text = str(cv)
    assert text.startswith("Cross-validation: 3 folds (stratified, seed 0), 24 samples")
    assert "fold 3" in text and "accuracy" in text
    assert json.loads(json.dumps(cv.to_dict()))["mean"] == cv.mean


def test_unstratified_folds_on_a_dataset_without_targets(data, calls):
    X, y = data

    class Plain(Dataset):
        def __len__(self):
            return 24

        def __getitem__(self, i):
            return X[i], y[i]

    cv = cross_validate(_build, Plain(), k=3, stratified=False, seed=1, progress=False,
                        num_workers=0)
    expected = KFold(3, shuffle=True, random_state=1).split(np.arange(24))
    for (_, va), (_, eva) in zip(cv.folds, expected):
        np.testing.assert_array_equal(va, eva)
    assert isinstance(calls[0]["data"], Subset)
    with pytest.raises(DataError, match=r"stratified folds need the labels up front.*"
                                        r"stratified=False"):
        cross_validate(_build, Plain(), k=3)


def test_subset_targets_and_eval_options(data, calls):
    X, y = data
    ds = Subset(TensorDataset(X, y), list(range(24)))
    ds.dataset.targets = y  # a TensorDataset given labels the way torchvision datasets hold them
    cv = cross_validate(_build, ds, k=2, progress=False, eval_options={"top_k": (1, 2)})
    assert all(sorted(r.top_k) == [1, 2] for r in cv.reports)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"k": 1}, ValueError, r"k must be an int in \[2, 24\]"),
    ({"k": 25}, ValueError, r"k must be an int in \[2, 24\]"),
    ({"k": 13}, DataError, r"need a class with at least 13 samples"),
])
def test_bad_k(data, calls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cross_validate(_build, data, **kwargs)


def test_bad_inputs(data, calls):
    X, _ = data
    with pytest.raises(DataError, match=r"one class label per sample.*stratified=False"):
        cross_validate(_build, (X, torch.rand(24)), k=2)
    with pytest.raises(TypeError, match=r"build_model must be a function"):
        cross_validate(_build(), (X, torch.arange(24) % 2), k=2)
    with pytest.raises(TypeError, match=r"build_model\(\) returned str"):
        cross_validate(lambda: "model", (X, torch.arange(24) % 2), k=2)
    with pytest.raises(TypeError, match=r"dataset must be a torch Dataset .* got int"):
        cross_validate(_build, 5, k=2)
    with pytest.raises(DataError, match=r"X has 24 samples but y has 3"):
        cross_validate(_build, (X, torch.arange(3)), k=2)


def _finetune_available() -> bool:
    try:
        importlib.import_module("transferkit.finetune")
        importlib.import_module("transferkit.training.trainer")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _finetune_available(), reason="transferkit.finetune is not available")
def test_with_the_real_finetune(data):
    X, y = data
    cv = cross_validate(_build, (X, y), k=2, epochs=1, strategy="linear_probe",
                        batch_size=12, progress=False, device="cpu")
    assert len(cv.reports) == 2 and all(r.n_samples == 12 for r in cv.reports)
    assert 0.0 <= cv.mean["accuracy"] <= 1.0
