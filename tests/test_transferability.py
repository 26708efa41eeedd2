"""Tests of transferkit.selection.transferability: LogME, LEEP, NCE and H-score.

Each score is checked against a second computation written here: an independent LogME with
matrix inverses and a scipy maximisation of the Gaussian marginal likelihood, LEEP as its
double sum, NCE and H-score on examples small enough to work out by hand.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from transferkit.selection.transferability import h_score, leep, logme, nce

FEATURE_SCORES = {"logme": logme, "h_score": h_score}


def clustered(n: int = 300, d: int = 8, k: int = 3, seed: int = 0):
    """Features whose classes sit far apart (separable), with their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    centres = 5.0 * rng.normal(size=(k, d))
    return centres[labels] + rng.normal(size=(n, d)), labels


def random_problem(seed: int, n: int, d: int, k: int):
    """Gaussian features and labels with at least two classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    labels[:2] = [0, 1]
    return rng.normal(size=(n, d)), labels


# ------------------------------------------------------------------------------------------
# Feature-based scores prefer features that separate the classes


@pytest.mark.parametrize("name", sorted(FEATURE_SCORES))
def test_separable_features_beat_shuffled_labels_and_noise(name):
    score = FEATURE_SCORES[name]
    features, labels = clustered()
    shuffled = np.random.default_rng(1).permutation(labels)
    noise = np.random.default_rng(2).normal(size=features.shape)
    good = score(features, labels)
    assert good > score(features, shuffled)
    assert good > score(noise, labels)


# ------------------------------------------------------------------------------------------
# LogME


def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float):
    """Evidence of the Bayesian linear model with explicit D x D matrices; also returns m."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    evidence = (d / 2 * math.log(alpha) + n / 2 * math.log(beta)
                - 0.5 * np.linalg.slogdet(a)[1]
                - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m
                - n / 2 * math.log(2 * math.pi))
    return evidence, m, np.linalg.inv(a)


def direct_max_evidence(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """MacKay's updates with matrix inverses (no SVD), from alpha = beta = 1 as in thuml/LogME."""
    n, d = f.shape
    alpha, beta = 1.0, 1.0
    for _ in range(100_000):
        evidence, m, a_inv = direct_log_evidence(f, y, alpha, beta)
        gamma = beta * np.trace(a_inv @ f.T @ f)  # = sum beta sigma_i / (alpha + beta sigma_i)
        new_alpha = gamma / (m @ m)
        new_beta = (n - gamma) / np.sum((f @ m - y) ** 2)
        moved = abs(math.log(new_alpha / new_beta) - math.log(alpha / beta))
        alpha, beta = new_alpha, new_beta
        if moved < 1e-13:
            break
    else:
        raise AssertionError("the direct fixed point did not converge; pick other test data")
    return direct_log_evidence(f, y, alpha, beta)[0], alpha, beta


def gaussian_marginal(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I / beta + F F^T / alpha): the evidence written as a marginal likelihood."""
    cov = np.eye(len(y)) / beta + f @ f.T / alpha
    return float(-0.5 * (len(y) * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1]
                         + y @ np.linalg.solve(cov, y)))


def direct_logme(f: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([direct_max_evidence(f, (labels == c).astype(float))[0]
                          for c in np.unique(labels)]) / len(labels))


def signal_problem(n: int, d: int, seed: int):
    """3 classes, each one-vs-rest target correlated with a direction of the features.

    Then every class has its maximum evidence inside (0, inf)^2, which the direct
    implementation needs; a target unrelated to the features sends alpha to infinity.
    """
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    logits = 2.0 * features[:, :3] + rng.normal(size=(n, 3))
    return features, np.argmax(logits, axis=1)


# (n, D, seed): seeds for which every class has its optimum inside, so the direct
# implementation converges; with n < D many labellings put it at alpha or beta = infinity.
DIRECT_CASES = [(40, 6, 0), (15, 30, 6)]


@pytest.mark.parametrize("n, d, seed", DIRECT_CASES, ids=["n>D", "n<D"])
def test_logme_matches_direct_implementation(n, d, seed):
    features, labels = signal_problem(n, d, seed)
    for c in np.unique(labels):  # first check the oracle: its evidence is the marginal
        y = (labels == c).astype(float)
        evidence, alpha, beta = direct_max_evidence(features, y)
        np.testing.assert_allclose(evidence, gaussian_marginal(features, y, alpha, beta),
                                   rtol=1e-10)
    np.testing.assert_allclose(logme(features, labels), direct_logme(features, labels),
                               rtol=1e-8)


def offset_problem(seed: int, n: int, d: int):
    """Features with a large common offset, 2 classes: the evidence can have two maxima."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d)) + 10 * rng.normal(size=d)
    labels = rng.integers(0, 2, size=n)
    labels[:2] = [0, 1]
    return features, labels


MARGINAL_CASES = {
    "n>D": signal_problem(40, 6, seed=0),
    "n<D": signal_problem(15, 30, seed=6),
    # Plain iteration of the updates creeps for 1e4 to over 1e5 steps in these two.
    "flat-towards-alpha-inf": random_problem(953997990, n=26, d=28, k=4),
    "flat-interior": random_problem(3322997374, n=9, d=37, k=3),
    # For class 1 the maximum nearest the geometric-mean start is 0.025 per sample lower.
    "two-maxima": offset_problem(268556532, n=16, d=5),
}


def global_max_marginal(features: np.ndarray, y: np.ndarray) -> float:
    """Max over (alpha, beta) of the marginal likelihood: a grid, then Nelder-Mead."""
    logs = np.linspace(-8, 16, 25)
    values = np.array([[gaussian_marginal(features, y, math.exp(la), math.exp(lb))
                        for lb in logs] for la in logs])
    i, j = np.unravel_index(np.argmax(values), values.shape)
    result = minimize(lambda p: -gaussian_marginal(features, y, *np.exp(p)),
                      x0=[logs[i], logs[j]], method="Nelder-Mead",
                      options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20_000})
    return max(-result.fun, values.max())


@pytest.mark.parametrize("name", sorted(MARGINAL_CASES))
def test_logme_is_global_max_of_gaussian_marginal_likelihood(name):
    """Independent of the fixed point: log N(y; 0, I/beta + FF^T/alpha) maximised by brute force."""
    features, labels = MARGINAL_CASES[name]
    best = [global_max_marginal(features, (labels == c).astype(float))
            for c in np.unique(labels)]
    np.testing.assert_allclose(logme(features, labels), np.mean(best) / len(labels),
                               rtol=1e-9)


def test_logme_of_features_without_linear_information():
    """Features orthogonal to every class indicator: the evidence peaks at alpha = infinity,
    the model y ~ N(0, I / beta), whose maximum per sample is -(1 + log(2 pi n_c / n)) / 2."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [5, 7, 8])
    features = rng.normal(size=(20, 4))
    for c in range(3):  # centre each class: F^T y_c = 0
        features[labels == c] -= features[labels == c].mean(axis=0)
    counts = np.array([5, 7, 8])
    expected = np.mean(-(1 + np.log(2 * np.pi * counts / 20)) / 2)
    assert logme(features, labels) == pytest.approx(expected, rel=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 40), d=st.integers(1, 50),
       k=st.integers(2, 4))
def test_logme_invariant_to_sample_order(seed, n, d, k):
    features, labels = random_problem(seed, n, d, k)
    order = np.random.default_rng(seed + 1).permutation(n)
    np.testing.assert_allclose(logme(features[order], labels[order]),
                               logme(features, labels), rtol=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-4, 1e-2, 10.0, 1e4]))
def test_logme_invariant_to_feature_units(seed, scale):
    features, labels = random_problem(seed, n=30, d=5, k=3)
    np.testing.assert_allclose(logme(scale * features, labels), logme(features, labels),
                               rtol=1e-9)


def test_logme_label_values_are_only_names():
    features, labels = signal_problem(40, 6, seed=0)
    renamed = np.array([7, -2, 40])[labels]
    assert logme(features, renamed) == pytest.approx(logme(features, labels), rel=1e-12)


# ------------------------------------------------------------------------------------------
# H-score


def test_h_score_by_hand_one_feature():
    # f = 1, 3, 5, 7 -> centred -3, -1, 1, 3: var = (9 + 1 + 1 + 9) / 4 = 5.
    # Class means 2 and 6 -> centred -2, -2, 2, 2: var = 4.  H = 4 / 5.
    features = np.array([[1.0], [3.0], [5.0], [7.0]])
    assert h_score(features, np.array([0, 0, 1, 1])) == pytest.approx(0.8, rel=1e-12)


def test_h_score_by_hand_uninformative_second_feature():
    # Second feature 1, 0, 0, 1: centred +-0.5, var 0.25, uncorrelated with the first, and
    # its class means are both 0.5, so cov(f) = diag(5, 0.25), cov(g) = diag(4, 0); H = 0.8.
    features = np.array([[1.0, 1.0], [3.0, 0.0], [5.0, 0.0], [7.0, 1.0]])
    assert h_score(features, np.array([0, 0, 1, 1])) == pytest.approx(0.8, rel=1e-12)


def test_h_score_by_hand_perfect_second_feature():
    # Second feature 0, 0, 1, 1 equals the class: cov(f) = [[5, 1], [1, 0.25]] with inverse
    # [[1, -4], [-4, 20]]; cov(g) = [[4, 1], [1, 0.25]]; H = 4 - 4 - 4 + 5 = 1 = K - 1.
    features = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 1.0], [7.0, 1.0]])
    assert h_score(features, np.array([0, 0, 1, 1])) == pytest.approx(1.0, rel=1e-10)


def test_h_score_saturates_when_features_outnumber_samples():
    """The documented failure: with D >= n - 1 any labelling scores K - 1."""
    features, labels = random_problem(seed=5, n=10, d=20, k=3)
    assert h_score(features, labels) == pytest.approx(2.0, rel=1e-8)


def test_h_score_ignores_offset_and_duplicated_columns():
    features, labels = clustered(n=60, d=4)
    padded = np.c_[features + 100.0, features[:, :1], np.ones(60)]  # rank still 4
    assert h_score(padded, labels) == pytest.approx(h_score(features, labels), rel=1e-8)


# ------------------------------------------------------------------------------------------
# NCE


def test_nce_by_hand():
    # P(z=0, y=0) = P(z=0, y=1) = 1/4, P(z=1, y=1) = 1/2: H(Y|Z) = 1/2 log 2 + 1/2 * 0.
    assert nce(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(
        -0.5 * math.log(2), rel=1e-12)


def test_nce_by_hand_uninformative_source():
    # One source label: H(Y|Z) = H(Y) = -(3/4 log 3/4 + 1/4 log 1/4).
    expected = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert nce(np.array([4, 4, 4, 4]), np.array([0, 0, 0, 1])) == pytest.approx(expected)


def test_nce_is_zero_when_source_determines_target():
    assert nce(np.array([3, 3, 5, 9, 9]), np.array([0, 0, 1, 1, 1])) == 0.0


# ------------------------------------------------------------------------------------------
# LEEP


def leep_by_definition(theta: np.ndarray, labels: np.ndarray) -> float:
    n, n_source = theta.shape
    n_target = int(labels.max()) + 1
    joint = np.zeros((n_target, n_source))
    for i in range(n):
        for z in range(n_source):
            joint[labels[i], z] += theta[i, z] / n
    total = 0.0
    for i in range(n):
        expected = 0.0
        for z in range(n_source):
            p_z = sum(joint[y, z] for y in range(n_target))
            if p_z > 0:
                expected += joint[labels[i], z] / p_z * theta[i, z]
        total += math.log(expected)
    return total / n


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 12), n_source=st.integers(1, 5),
       k=st.integers(2, 3), dead_column=st.booleans())
def test_leep_equals_its_definition(seed, n, n_source, k, dead_column):
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.ones(n_source), size=n)
    if dead_column:  # a source class no sample puts mass on: P(z) = 0
        theta = np.c_[theta, np.zeros(n)]
    labels = rng.integers(0, k, size=n)
    labels[:2] = [0, 1]
    value = leep(theta, labels)
    assert value == pytest.approx(leep_by_definition(theta, labels), rel=1e-12, abs=1e-14)
    assert value <= 1e-12


def test_leep_is_zero_for_a_perfect_source():
    labels = np.array([0, 1, 2, 1, 0])
    assert leep(np.eye(3)[labels], labels) == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------------------------------------------------
# Inputs


def test_torch_tensors_give_the_numpy_result():
    features, labels = clustered(n=50, d=4)
    theta = np.random.default_rng(0).dirichlet(np.ones(5), size=50)
    source = theta.argmax(axis=1)
    f_t = torch.from_numpy(features).requires_grad_()
    y_t = torch.from_numpy(labels)
    assert logme(f_t, y_t) == logme(features, labels)
    assert h_score(f_t, y_t) == h_score(features, labels)
    assert leep(torch.from_numpy(theta), y_t) == leep(theta, labels)
    assert nce(torch.from_numpy(source), y_t) == nce(source, labels)


def test_float32_tensors_are_computed_in_float64():
    features, labels = clustered(n=50, d=4)
    f32 = features.astype(np.float32)
    assert logme(torch.from_numpy(f32), torch.from_numpy(labels)) == logme(
        f32.astype(np.float64), labels)


def test_integer_valued_float_labels_are_accepted():
    features, labels = clustered(n=50, d=4)
    assert h_score(features, labels.astype(np.float32)) == h_score(features, labels)


X4 = np.arange(8.0).reshape(4, 2)
Y4 = np.array([0, 0, 1, 1])
P4 = np.full((4, 2), 0.5)

ERROR_CASES = [
    (logme, (X4.tolist(), Y4), TypeError,
     "logme: features must be a numpy array or a torch tensor, got list. "
     "Convert it first, e.g. np.asarray(features)."),
    (logme, (X4, np.eye(2)[Y4]), ValueError,
     "logme: labels must be 1-D (n_samples,), got shape (4, 2). "
     "Pass class indices, not one-hot rows: use labels.argmax(axis=1)."),
    (h_score, (X4, np.array(["a", "a", "b", "b"])), TypeError,
     "h_score: labels must hold integer class indices, got dtype <U1. "
     "Encode them first, e.g. np.unique(labels, return_inverse=True)[1]."),
    (logme, (X4, np.array([0.0, np.nan, 1.0, 1.0])), ValueError,
     "logme: labels contains NaN or inf; every sample needs a class."),
    (logme, (X4, np.array([0.0, 0.5, 1.0, 1.0])), ValueError,
     "logme: labels must be integer class indices, got the non-integer value 0.5."),
    (h_score, (X4, np.zeros(4, dtype=int)), ValueError,
     "h_score: labels has 1 distinct class(es), [0]; at least 2 are needed to score a transfer."),
    (logme, (X4.astype(complex), Y4), TypeError,
     "logme: features must hold real numbers, got dtype complex128."),
    (h_score, (np.arange(4.0), Y4), ValueError,
     "h_score: features must be 2-D (n_samples, n_columns), got shape (4,). "
     "For a single column use features.reshape(-1, 1)."),
    (logme, (np.ones((100, 3)), np.arange(90) % 2), ValueError,
     "logme: features has 100 rows but labels has 90; they must describe the same samples."),
    (logme, (np.ones((4, 0)), Y4), ValueError,
     "logme: features has 0 columns; expected at least 1."),
    (h_score, (np.where(X4 == 3.0, np.inf, X4), Y4), ValueError,
     "h_score: features contains 1 non-finite value(s) (NaN or inf); "
     "drop or repair those samples first."),
    (logme, (np.zeros((4, 3)), Y4), ValueError,
     "logme: features are all zero, so no linear model can use them"),
    (leep, (np.array([[1.1, -0.1]] * 4), Y4), ValueError,
     "leep: source_probs must be non-negative, got -0.1 at row 0, column 1. "
     "Pass softmax probabilities, not logits: torch.softmax(logits, dim=1)."),
    (leep, (np.array([[0.5, 0.5], [2.0, 1.0], [0.5, 0.5], [0.5, 0.5]]), Y4), ValueError,
     "leep: each row of source_probs must sum to 1 (within 0.001), but row 1 sums to 3. "
     "Pass softmax probabilities, not logits: torch.softmax(logits, dim=1)."),
    (leep, (P4[:3], Y4), ValueError,
     "leep: source_probs has 3 rows but labels has 4; they must describe the same samples."),
    (nce, (np.array([0, 1, 1]), Y4), ValueError,
     "nce: source_labels has 3 entries but labels has 4; they must describe the same samples."),
    (nce, (np.array([0.0, 1.5, 1.0, 1.0]), Y4), ValueError,
     "nce: source_labels must be integer class indices, got the non-integer value 1.5."),
    (nce, (np.array([0, 1, 1, 0]), [0, 0, 1, 1]), TypeError,
     "nce: labels must be a numpy array or a torch tensor, got list."),
]


@pytest.mark.parametrize("fn, args, error, message", ERROR_CASES,
                         ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(ERROR_CASES)])
def test_error_messages(fn, args, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fn(*args)


def test_probability_rows_within_tolerance_are_accepted():
    theta = np.array([[0.5, 0.5009], [0.3, 0.7], [0.2, 0.8], [0.9, 0.1]])  # row 0 sums to 1.0009
    assert np.isfinite(leep(theta, Y4))


def test_docs_usage_snippet_runs_and_prefers_the_separating_backbone():
    page = Path(__file__).resolve().parents[1] / "docs" / "choosing-a-model.md"
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", page.read_text(),
                                                 flags=re.S)
                   if "features_a" in block)  # the Usage block
    namespace: dict = {}
    exec(compile(snippet, str(page), "exec"), namespace)  # noqa: S102 - our own docs page
    features_a, features_b, labels = (namespace[k] for k in ("features_a", "features_b", "labels"))
    assert logme(features_a, labels) > logme(features_b, labels)
    assert h_score(features_a, labels) > h_score(features_b, labels)
