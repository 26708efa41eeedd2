"""compute_report / EvalReport: every figure against scikit-learn (or torch) computed here."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from transferkit.errors import DataError, MissingDependencyError
from transferkit.metrics.classification import EvalReport, compute_report, expected_calibration_error

K = 5


@pytest.fixture
def multiclass():
    """60 samples, 5 classes; class 4 never occurs in the targets (but is predicted)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, K - 1, size=60)
    logits = rng.normal(size=(60, K)) * 2
    logits[np.arange(60), y] += 1.5  # better than chance
    return y, logits


def test_multiclass_figures_equal_sklearn(multiclass):
    y, logits = multiclass
    labels = list(range(K))
    pred = logits.argmax(1)
    r = compute_report(y, logits, top_k=(1, 2, 3), class_names=list("abcde"))
    assert r.task == "multiclass" and r.n_samples == 60 and r.num_classes == K
    assert r.accuracy == skm.accuracy_score(y, pred)
    assert r.top_k[1] == r.accuracy
    for k in (2, 3):
        expected = skm.top_k_accuracy_score(y, logits, k=k, labels=labels)
        assert r.top_k[k] == pytest.approx(expected)
        assert r.metrics[f"top{k}_accuracy"] == pytest.approx(expected)
    for avg in ("macro", "weighted"):
        p, rc, f, _ = skm.precision_recall_fscore_support(
            y, pred, labels=labels, average=avg, zero_division=0)
        assert r.metrics[f"{avg}_precision"] == pytest.approx(p)
        assert r.metrics[f"{avg}_recall"] == pytest.approx(rc)
        assert r.metrics[f"{avg}_f1"] == pytest.approx(f)
    p, rc, f, s = skm.precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0)
    assert list(r.per_class) == list("abcde")
    np.testing.assert_allclose([r.per_class[c]["precision"] for c in "abcde"], p)
    np.testing.assert_allclose([r.per_class[c]["recall"] for c in "abcde"], rc)
    np.testing.assert_allclose([r.per_class[c]["f1"] for c in "abcde"], f)
    assert [r.per_class[c]["support"] for c in "abcde"] == s.tolist()
    assert r.per_class["e"]["support"] == 0  # the absent class is reported, not dropped
    np.testing.assert_array_equal(r.confusion_matrix, skm.confusion_matrix(y, pred, labels=labels))


def test_multiclass_loss_equals_torch_cross_entropy(multiclass):
    y, logits = multiclass
    r = compute_report(torch.from_numpy(y), torch.from_numpy(logits))
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert r.loss == pytest.approx(expected, rel=1e-12)


def test_given_loss_is_used(multiclass):
    y, logits = multiclass
    assert compute_report(y, logits, loss=torch.tensor(0.25)).loss == 0.25


def test_numpy_and_torch_inputs_agree(multiclass):
    y, logits = multiclass
    a = compute_report(y, logits)
    b = compute_report(torch.from_numpy(y), torch.from_numpy(logits).float())
    assert a.accuracy == b.accuracy
    assert a.loss == pytest.approx(b.loss, rel=1e-6)


def test_top_k_at_or_above_num_classes_is_skipped(multiclass):
    y, logits = multiclass
    r = compute_report(y, logits, top_k=(1, 4, 5, 10))
    assert sorted(r.top_k) == [1, 4]
    assert "top5_accuracy" not in r.metrics


def _ece_by_hand(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.sum() / len(y) * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return total


def test_ece_small_case_by_hand():
    # 5 bins of width 0.2: confidence 0.9 -> (0.8, 1] (correct), 0.6 -> (0.4, 0.6] (wrong),
    # 0.7 and 0.75 -> (0.6, 0.8] (one correct, one wrong).
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.75, 0.25]])
    y = np.array([0, 1, 1, 1])
    expected = 0.25 * abs(1 - 0.9) + 0.25 * abs(0 - 0.6) + 0.5 * abs(0.5 - 0.725)
    assert expected_calibration_error(probs, y, n_bins=5) == pytest.approx(expected)


def test_report_ece_equals_hand_computation(multiclass):
    y, logits = multiclass
    probs = torch.from_numpy(logits).softmax(1).numpy()
    for n_bins in (1, 10, 15):
        r = compute_report(y, logits, n_bins=n_bins)
        assert r.ece == pytest.approx(_ece_by_hand(probs, y, n_bins))


@pytest.fixture
def multilabel():
    rng = np.random.default_rng(1)
    y = (rng.random((40, 4)) < 0.4).astype(np.float32)
    y[:, 3] = 0  # a label with no positive at all
    logits = rng.normal(size=(40, 4)) + 2 * (y - 0.5)
    return y, logits


def test_multilabel_figures_equal_sklearn(multilabel):
    y, logits = multilabel
    probs = 1 / (1 + np.exp(-logits))
    r = compute_report(y, logits, task="multilabel", thresholds=(0.5, 0.3))
    ap = skm.average_precision_score(y[:, :3], probs[:, :3], average=None)
    assert r.mAP == pytest.approx(ap.mean())  # the label without positives is left out
    assert [r.per_class[str(i)]["average_precision"] for i in range(3)] == pytest.approx(ap)
    assert r.per_class["3"]["average_precision"] is None
    assert r.per_class["3"]["positives"] == 0
    for t in (0.5, 0.3):
        pred = (probs >= t).astype(int)
        for avg in ("micro", "macro"):
            expected = skm.f1_score(y, pred, average=avg, zero_division=0)
            assert r.metrics[f"{avg}_f1@{t:g}"] == pytest.approx(expected)
    assert r.micro_f1 == r.metrics["micro_f1@0.5"]  # the plain name is the first threshold
    bce = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(y).double())
    assert r.loss == pytest.approx(bce.item(), rel=1e-12)


def test_multilabel_without_any_positive_gives_nan_map():
    r = compute_report(np.zeros((4, 2)), np.zeros((4, 2)), task="multilabel")
    assert math.isnan(r.mAP)
    assert r.to_dict()["metrics"]["mAP"] is None  # JSON-safe


def test_regression_figures_equal_sklearn():
    rng = np.random.default_rng(2)
    y = rng.normal(size=30)
    out = y + rng.normal(scale=0.3, size=30)
    r = compute_report(y, out[:, None], task="regression")  # (N, 1) outputs for (N,) targets
    assert r.mse == pytest.approx(skm.mean_squared_error(y, out))
    assert r.loss == r.mse
    assert r.mae == pytest.approx(skm.mean_absolute_error(y, out))
    assert r.rmse == pytest.approx(math.sqrt(skm.mean_squared_error(y, out)))
    assert r.r2 == pytest.approx(skm.r2_score(y, out))
    assert r.top_k == {} and r.confusion_matrix is None


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("targets, outputs, kwargs, match", [
    (np.zeros(3, int), np.zeros((4, 3)), {}, r"targets has 3 samples but outputs has 4"),
    (np.array([0, 3]), np.zeros((2, 3)), {}, r"1 targets are outside \[0, 3\) \(values \[3\]\)"),
    (np.array([0, -1]), np.zeros((2, 3)), {}, r"outside \[0, 3\)"),
    (np.array([0, 1]), np.array([[0.0, np.nan], [0, np.inf]]), {},
     r"2 non-finite values \(NaN or inf\) in 2 samples, first at sample 0"),
    (np.array([0.5, 1]), np.zeros((2, 3)), {}, r"integer class indices"),
    (np.zeros(0, int), np.zeros((0, 3)), {}, r"no samples"),
    (np.array([0, 1]), np.zeros((2, 1)), {}, r"K >= 2.*task='multilabel' with one label"),
    (np.zeros((2, 3)), np.zeros((2, 2)), {"task": "multilabel"}, r"shape of the outputs \(2, 2\)"),
    (np.full((2, 2), 2.0), np.zeros((2, 2)), {"task": "multilabel"}, r"must be 0 or 1"),
    (np.array([1.0, np.nan]), np.zeros(2), {"task": "regression"}, r"NaN or inf"),
])
def test_bad_data_raises_data_error(targets, outputs, kwargs, match):
    with pytest.raises(DataError, match=match):
        compute_report(targets, outputs, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "ranking"}, r"task must be one of \['multiclass', 'multilabel', 'regression'\]"),
    ({"top_k": (0,)}, r"top_k must be ints >= 1, got \[0\]"),
    ({"n_bins": 0}, r"n_bins must be an int >= 1, got 0"),
    ({"thresholds": (1.5,)}, r"thresholds must be probabilities in \[0, 1\]"),
    ({"class_names": ["a"]}, r"class_names has 1 names but the outputs have 3 classes"),
])
def test_bad_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_report(np.array([0, 1]), np.zeros((2, 3)), **kwargs)


def test_unknown_attribute_lists_the_metrics(multiclass):
    r = compute_report(*multiclass)
    with pytest.raises(AttributeError, match=r"no attribute 'mAP'.*'accuracy'"):
        _ = r.mAP


# -- printing, dict, JSON -------------------------------------------------------------------
def test_str_is_a_table_with_every_metric_and_class(multiclass):
    r = compute_report(*multiclass, class_names=["cat", "dog", "emu", "fox", "gnu"])
    r.seconds, r.images_per_second = 2.0, 30.0
    text = str(r)
    assert text.splitlines()[0] == (
        "EvalReport: multiclass, 60 samples, 5 classes (2.00 s, 30.0 images/s)")
    for name, value in r.metrics.items():
        assert f"{name}" in text and f"{value:.4f}" in text
    assert "gnu" in text and "confusion matrix" in text


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "regression"])
def test_dict_and_json_round_trip(task, multiclass, multilabel):
    if task == "multiclass":
        r = compute_report(*multiclass, class_names=list("abcde"), top_k=(1, 3))
    elif task == "multilabel":
        r = compute_report(*multilabel, task="multilabel")
    else:
        r = compute_report(np.arange(5.0), np.arange(5.0) + 0.5, task="regression")
    r.seconds = 1.5
    d = r.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # plain JSON types only
    back = EvalReport.from_dict(json.loads(r.to_json()))
    assert back.to_dict() == d


def test_to_json_writes_the_file(tmp_path, multiclass):
    r = compute_report(*multiclass)
    text = r.to_json(tmp_path / "eval.json")
    assert json.loads((tmp_path / "eval.json").read_text()) == json.loads(text)
    assert json.loads(text)["confusion_matrix"] == r.confusion_matrix.tolist()


# -- plotting -------------------------------------------------------------------------------
def test_plot_confusion_matrix_writes_a_png(tmp_path, multiclass):
    pytest.importorskip("matplotlib")
    r = compute_report(*multiclass)
    for normalize in (None, "true", "pred", "all"):
        path = tmp_path / f"cm_{normalize}.png"
        fig = r.plot_confusion_matrix(path, normalize=normalize)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig.axes[0].get_xlabel() == "predicted class"


def test_plot_errors(multiclass):
    pytest.importorskip("matplotlib")
    r = compute_report(*multiclass)
    with pytest.raises(ValueError, match=r"normalize must be None, 'true', 'pred' or 'all'"):
        r.plot_confusion_matrix(normalize="rows")
    reg = compute_report(np.arange(3.0), np.arange(3.0), task="regression")
    with pytest.raises(ValueError, match=r"only multiclass reports.*'regression'"):
        reg.plot_confusion_matrix()


def test_plot_without_matplotlib_names_the_extra(monkeypatch, multiclass):
    r = compute_report(*multiclass)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "transferkit\[plot\]"'):
        r.plot_confusion_matrix()
