r"""Transferability scores: rank pretrained models for a target task without fine-tuning.

Each score looks at what a frozen pretrained model produces on the *target* training set and
returns one number; a higher number predicts better accuracy after transfer. All four are
computed in float64 with numpy and accept numpy arrays or torch tensors.

Notation: n target samples, labels y_i in K classes, features F (n x D) from the backbone,
source-model softmax outputs theta(x_i) over Z source classes, hard source labels z_i.

LogME (You et al., ICML 2021), from ``features``::

    For each class k, y = 1[labels == k] (one-vs-rest) and the Bayesian linear model
        w ~ N(0, alpha^-1 I_D),   y | F, w ~ N(F w, beta^-1 I_n).
    Its log evidence, with A = alpha I + beta F^T F and m = beta A^-1 F^T y, is
        L(alpha, beta) = D/2 log alpha + n/2 log beta - 1/2 log|A|
                         - beta/2 ||F m - y||^2 - alpha/2 m^T m - n/2 log(2 pi).
    L is maximised over alpha and beta at a fixed point of MacKay's updates (sigma_i: the
    eigenvalues of F^T F, all from one SVD of F)
        gamma = sum_i beta sigma_i / (alpha + beta sigma_i)
        alpha = gamma / m^T m,   beta = (n - gamma) / ||F m - y||^2
    LogME = (1/K) sum_k max L_k / n.

LEEP (Nguyen et al., ICML 2020), from ``source_probs``::

    P(y, z) = 1/n sum_i theta(x_i)_z 1[y_i = y],   P(y | z) = P(y, z) / P(z)
    LEEP = 1/n sum_i log( sum_z P(y_i | z) theta(x_i)_z )          (always <= 0)

NCE (Tran et al., ICCV 2019), from hard ``source_labels``::

    P(y, z) = 1/n #{i : y_i = y, z_i = z}
    NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z)               (always <= 0)

H-score (Bao et al., ICIP 2019), from ``features``::

    f centred; g_i = E[f | y = y_i] (the mean feature of sample i's class)
    H = tr( cov(f)^+ cov(g) )                      (0 <= H <= K - 1)

When the scores mislead:

- LogME assumes a *linear* model (without bias) on *fixed* features, so it cannot see what
  fine-tuning the body would change. With n <= D every labelling is fitted exactly and the
  score rests on the prior alone: it can then rank shuffled labels above real ones. Keep n
  well above D.
- H-score inverts the feature covariance. With D close to or above n the covariance is
  singular or ill-conditioned; the pseudo-inverse then makes every labelling look perfectly
  explained and H reaches its maximum K - 1 whatever the features.
- LEEP and NCE need the source classifier's head (its probabilities or predicted labels), so
  they cannot score a bare feature extractor (self-supervised backbones, heads removed). They
  measure how well the *source classes* predict the target classes, not the features.
- All four are computed on the target training set: with few samples per class they are noisy,
  and they rank models for one dataset; the values are not comparable across datasets.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["logme", "leep", "nce", "h_score"]

ArrayLike = np.ndarray | torch.Tensor

# Rows of source_probs may deviate this much from summing to 1 (float32 softmax rounding).
PROB_SUM_TOL = 1e-3


# ------------------------------------------------------------------------------------------
# Input checks


def _as_numpy(fn: str, name: str, x: object) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():  # numpy has no bfloat16; we compute in float64 anyway
            x = x.to(torch.float64)
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(
        f"{fn}: {name} must be a numpy array or a torch tensor, got {type(x).__name__}. "
        f"Convert it first, e.g. np.asarray({name})."
    )


def _check_labels(fn: str, labels: object, name: str = "labels", min_classes: int = 2
                  ) -> tuple[np.ndarray, int]:
    """Validate integer class labels; return them re-coded as 0..C-1 and the class count C."""
    y = _as_numpy(fn, name, labels)
    if y.ndim != 1:
        raise ValueError(
            f"{fn}: {name} must be 1-D (n_samples,), got shape {y.shape}. "
            f"Pass class indices, not one-hot rows: use {name}.argmax(axis=1)."
        )
    if y.dtype.kind not in "biuf":
        raise TypeError(
            f"{fn}: {name} must hold integer class indices, got dtype {y.dtype}. "
            f"Encode them first, e.g. np.unique({name}, return_inverse=True)[1]."
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{fn}: {name} contains NaN or inf; every sample needs a class.")
        if np.any(y != np.round(y)):
            bad = y[y != np.round(y)][0]
            raise ValueError(
                f"{fn}: {name} must be integer class indices, got the non-integer value {bad}. "
                "Pass class indices, not probabilities or regression targets."
            )
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(
            f"{fn}: {name} has {len(classes)} distinct class(es), {classes.tolist()}; "
            f"at least {min_classes} are needed to score a transfer."
        )
    return codes.reshape(-1), len(classes)


def _check_matrix(fn: str, name: str, x: object, n_labels: int) -> np.ndarray:
    """Validate a finite real (n_samples, n_columns) matrix; return it as float64."""
    f = _as_numpy(fn, name, x)
    if f.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: {name} must hold real numbers, got dtype {f.dtype}.")
    if f.ndim != 2:
        raise ValueError(
            f"{fn}: {name} must be 2-D (n_samples, n_columns), got shape {f.shape}. "
            f"For a single column use {name}.reshape(-1, 1)."
        )
    if f.shape[0] != n_labels:
        raise ValueError(
            f"{fn}: {name} has {f.shape[0]} rows but labels has {n_labels}; "
            "they must describe the same samples."
        )
    if f.shape[1] == 0:
        raise ValueError(f"{fn}: {name} has 0 columns; expected at least 1.")
    f = f.astype(np.float64)
    n_bad = int(np.size(f) - np.count_nonzero(np.isfinite(f)))
    if n_bad:
        raise ValueError(
            f"{fn}: {name} contains {n_bad} non-finite value(s) (NaN or inf); "
            "drop or repair those samples first."
        )
    return f


def _check_probs(fn: str, source_probs: object, n_labels: int) -> np.ndarray:
    """Validate rows of probabilities: non-negative, each summing to 1 within PROB_SUM_TOL."""
    p = _check_matrix(fn, "source_probs", source_probs, n_labels)
    if np.any(p < 0):
        row, col = np.argwhere(p < 0)[0]
        raise ValueError(
            f"{fn}: source_probs must be non-negative, got {p[row, col]} at row {row}, "
            f"column {col}. Pass softmax probabilities, not logits: torch.softmax(logits, dim=1)."
        )
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > PROB_SUM_TOL
    if np.any(off):
        row = int(np.argmax(off))
        raise ValueError(
            f"{fn}: each row of source_probs must sum to 1 (within {PROB_SUM_TOL}), but row "
            f"{row} sums to {sums[row]:.6g}. Pass softmax probabilities, not logits: "
            "torch.softmax(logits, dim=1)."
        )
    return p


# ------------------------------------------------------------------------------------------
# LogME


def _posterior_stats(t: np.ndarray, sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray,
                     n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """gamma, n - gamma, m^T m and ||F m - y||^2 at t = alpha / beta, for every class.

    sigma: (k, 1) non-zero eigenvalues of F^T F; x2: (k, C) squared coordinates of y on the
    left singular vectors; outside: (C,) energy of y outside the column space of F; t: (C,).
    """
    keep = sigma / (sigma + t)  # (k, C) how much of each direction the posterior mean keeps
    shrink = t / (sigma + t)  # (k, C) = 1 - keep, without cancellation when t is tiny
    gamma = keep.sum(axis=0)
    n_minus_gamma = (n - len(sigma)) + shrink.sum(axis=0)
    m2 = (sigma * x2 / (sigma + t) ** 2).sum(axis=0)
    residual = (shrink**2 * x2).sum(axis=0) + outside
    return gamma, n_minus_gamma, m2, residual


def _log_evidence(alpha: np.ndarray, beta: np.ndarray, sigma: np.ndarray, x2: np.ndarray,
                  outside: np.ndarray, n: int) -> np.ndarray:
    """Log evidence L(alpha, beta) of every class, (C,).

    Written with log|A| = (D - k) log alpha + sum_i log(alpha + beta sigma_i) and
    log(alpha + beta sigma_i) = log beta + log(t + sigma_i); the D - k null-space directions
    of F cancel against the prior's normaliser, which is why D does not appear.
    """
    t = alpha / beta
    _, _, m2, residual = _posterior_stats(t, sigma, x2, outside, n)
    k = len(sigma)
    return (k / 2 * np.log(alpha) + (n - k) / 2 * np.log(beta)
            - 0.5 * np.log(t + sigma).sum(axis=0)
            - beta / 2 * residual - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))


# log t = log(alpha / beta) is searched within [sigma_min * T_LOW, sigma_max * T_HIGH]. Beyond
# those bounds the evidence is within about 1e-12 per sample of its limit (t -> 0: no noise;
# t -> infinity: the features are useless), which is then the supremum.
T_LOW, T_HIGH = 1e-12, 1e12
BISECT_TOL = 1e-10  # width in log t at which a bracketed fixed point is taken as found
N_SCAN = 64  # grid points over the bounds, about one per unit of log t


def _update_direction(u: np.ndarray, sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray,
                      n: int) -> np.ndarray:
    """log(alpha' / beta') - u for one fixed-point update from t = exp(u), per class.

    alpha' = gamma / m^T m and beta' = (n - gamma) / ||F m - y||^2. Its sign is the sign of the
    derivative of the evidence (maximised over beta) along log t: the update moves uphill,
    and its fixed points are exactly the stationary points of the evidence.
    """
    gamma, n_minus_gamma, m2, residual = _posterior_stats(np.exp(u), sigma, x2, outside, n)
    with np.errstate(divide="ignore"):  # m2 = 0: y is orthogonal to F, uphill is t -> inf
        return np.log(gamma * residual / (m2 * n_minus_gamma)) - u


def _profile_log_evidence(t: np.ndarray, sigma: np.ndarray, x2: np.ndarray,
                          outside: np.ndarray, n: int) -> np.ndarray:
    """Log evidence at alpha = t beta with the best beta for that t, (C,).

    At a fixed point gamma = alpha m^T m and n - gamma = beta ||F m - y||^2, hence
    beta = n / (||F m - y||^2 + t m^T m): this is the evidence the updates converge to.
    """
    _, _, m2, residual = _posterior_stats(t, sigma, x2, outside, n)
    beta = n / (residual + t * m2)
    return _log_evidence(t * beta, beta, sigma, x2, outside, n)


def _bracket_uphill(a: np.ndarray, sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray,
                    n: int, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From log t = a, stride uphill (doubling) until the update's direction reverses.

    Returns (a, b, uphill): the updates point from a towards b and from b towards a, with
    uphill = sign(b - a); or a == b at a bound, when the evidence rises all the way there.
    """
    step = _update_direction(a, sigma, x2, outside, n)
    uphill = np.sign(step)
    stride = np.clip(np.abs(step), 1e-6, bounds[1] - bounds[0])
    a, b = a.copy(), a.copy()
    searching = uphill != 0
    while np.any(searching):
        i = np.flatnonzero(searching)
        b[i] = np.clip(a[i] + uphill[i] * stride[i], *bounds)
        crossed = _update_direction(b[i], sigma, x2[:, i], outside[i], n) * uphill[i] <= 0
        at_bound = (b[i] == bounds[0]) | (b[i] == bounds[1])
        a[i[~crossed]] = b[i[~crossed]]  # still uphill: the bracket starts further on
        stride[i] *= 2
        searching[i[crossed | at_bound]] = False
    return a, b, uphill


def _max_log_evidence(sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray,
                      n: int) -> np.ndarray:
    """Log evidence at the highest fixed point of the updates, per class, (C,).

    The evidence can have two maxima in log t (features with a large common offset), so it
    is first scanned on a grid; from the best grid point, the fixed point uphill is bracketed
    and bisected (iterating the updates instead can take 1e5 steps in flat stretches).
    """
    n_classes = x2.shape[1]
    bounds = np.log([sigma.min() * T_LOW, sigma.max() * T_HIGH])
    cls = (sigma, x2, outside, n)
    grid = np.linspace(*bounds, N_SCAN)
    scan = np.stack([_profile_log_evidence(np.full(n_classes, np.exp(u)), *cls) for u in grid])
    a, b, uphill = _bracket_uphill(grid[np.argmax(scan, axis=0)], *cls, bounds)
    while np.any(np.abs(b - a) > BISECT_TOL):
        mid = (a + b) / 2
        towards_b = _update_direction(mid, *cls) * uphill > 0
        a, b = np.where(towards_b, mid, a), np.where(towards_b, b, mid)
    return _profile_log_evidence(np.exp((a + b) / 2), *cls)


def _outside_energy(u: np.ndarray, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """||y_c - U U^T y_c||^2 for every class c: the part of y_c no linear model can fit, (C,).

    ||y_c||^2 - ||U^T y_c||^2 is exact in theory but cancels when y_c lies nearly in the column
    space of F (n slightly above rank(F)), which is where the evidence depends on it most;
    those classes are recomputed from their residuals.
    """
    counts = np.bincount(codes, minlength=len(x)).astype(np.float64)
    out = counts - np.sum(x**2, axis=1)
    for c in np.flatnonzero(out < 1e-4 * counts):
        residual = (codes == c) - u @ x[c]  # (n,)
        out[c] = residual @ residual
    return out


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME: the average log maximum evidence of a Bayesian linear model on the features.

    You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021. Follows the reference implementation (github.com/thuml/LogME,
    ``LogME.py``): one-vs-rest 0/1 targets, the fixed point of MacKay's updates, one SVD of
    F shared by all classes, with the part of y outside the column space of F added to the
    residual. Deliberate differences, each of which can move the score:

    - the reference iterates the updates at most 11 times from alpha = beta = 1 with a 1%
      tolerance, which can stop short of the fixed point (by a few hundredths per sample on
      random 30 x 300 features; plain iteration can need 1e5 steps), and finds the maximum
      nearest its start, while a few percent of random problems have a second, higher one.
      Here the fixed point is solved for: only alpha / beta feeds the next update, and the
      update moves uphill in it, so from the best of a 64-point scan of log(alpha / beta),
      doubling strides bracket the fixed point and bisection finds it to 1e-10. The search
      stays within 1e-12 x the smallest and 1e12 x the largest eigenvalue of F^T F, where
      the evidence has reached its limit. The score therefore does not depend on the units
      of the features;
    - no 1e-5 is added to the denominators, which made the reference depend on those units;
    - log|A| counts the D - k zero eigenvalues of F^T F, which the reference's SVD-based
      ``_fit_fixed_point`` drops when n < D (thuml/LogME issue #23);
    - the classes are the distinct values in ``labels``, not ``range(labels.max() + 1)``.

    If a linear function of the features reproduces a class exactly while n > rank(F), the
    evidence is unbounded and the score is a large number set by the bound on alpha / beta.

    Args:
        features: (n_samples, n_features) features of the target training set from a frozen
            backbone (numpy array or torch tensor).
        labels: (n_samples,) integer class labels; at least 2 distinct classes.

    Returns:
        The LogME score: a log evidence per sample, higher is better. Compare it only
        between models scored on the same data.

    Raises:
        ValueError: on bad shapes, non-finite features, fewer than 2 classes, or features
            that are all zero.
        TypeError: on inputs that are not arrays, or of a non-numeric dtype.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 3, size=200)
        >>> features = np.eye(3)[labels] + 0.1 * rng.normal(size=(200, 3))
        >>> logme(features, labels) > logme(rng.normal(size=(200, 3)), labels)
        True
    """
    codes, n_classes = _check_labels("logme", labels)
    f = _check_matrix("logme", "features", features, len(codes))
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)  # (n, r), (r,) with r = min(n, D)
    k = int(np.count_nonzero(s > s[0] * max(n, d) * np.finfo(np.float64).eps))  # rank of F
    if k == 0:
        raise ValueError("logme: features are all zero, so no linear model can use them; "
                         "check the feature extractor.")
    u = u[:, :k]
    x = np.zeros((n_classes, k))
    np.add.at(x, codes, u)  # row c = U^T y_c for the one-vs-rest target y_c
    outside = _outside_energy(u, x, codes) if k < n else np.zeros(n_classes)
    sigma = (s[:k] ** 2)[:, None]  # (k, 1)
    x2 = (x**2).T  # (k, C)
    evidence = _max_log_evidence(sigma, x2, outside, n)
    return float(np.mean(evidence) / n)


# ------------------------------------------------------------------------------------------
# LEEP, NCE, H-score


def leep(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """LEEP: log expected empirical prediction of the source classifier re-mapped to targets.

    Nguyen, Hassner, Seeger, Archambeau. "LEEP: A New Measure to Evaluate Transferability of
    Learned Representations", ICML 2020.

    Args:
        source_probs: (n_samples, n_source_classes) softmax outputs of the pretrained
            classifier on the target training set; each row non-negative and summing to 1
            (within 1e-3, to allow float32 rounding).
        labels: (n_samples,) integer target labels; at least 2 distinct classes.

    Returns:
        The LEEP score, <= 0 (higher is better; 0 means the source classes determine the
        target classes).

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
        >>> round(leep(probs, np.array([0, 0, 1, 1])), 4)
        -0.3426
    """
    codes, n_classes = _check_labels("leep", labels)
    theta = _check_probs("leep", source_probs, len(codes))
    n = len(codes)
    joint = np.zeros((n_classes, theta.shape[1]))  # (K, Z) P(y, z)
    np.add.at(joint, codes, theta / n)
    p_z = joint.sum(axis=0)
    # A source class that no sample puts mass on has P(z) = 0 and contributes nothing.
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)  # P(y | z)
    expected = np.sum(theta * cond[codes], axis=1)  # (n,) sum_z P(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(expected)))


def nce(source_labels: ArrayLike, labels: ArrayLike) -> float:
    """NCE: negative conditional entropy of the target labels given the source labels.

    Tran, Nguyen, Hassner. "Transferability and Hardness of Supervised Classification Tasks",
    ICCV 2019. Natural logarithm.

    Args:
        source_labels: (n_samples,) hard labels predicted by the pretrained classifier (for
            example ``source_probs.argmax(axis=1)``), any integers.
        labels: (n_samples,) integer target labels; at least 2 distinct classes.

    Returns:
        -H(Y | Z), <= 0 (higher is better; 0 when the source label determines the target).

    Example:
        >>> round(nce(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])), 4)
        -0.3466
    """
    codes, n_classes = _check_labels("nce", labels)
    z, n_source = _check_labels("nce", source_labels, name="source_labels", min_classes=1)
    if len(z) != len(codes):
        raise ValueError(
            f"nce: source_labels has {len(z)} entries but labels has {len(codes)}; "
            "they must describe the same samples."
        )
    joint = np.zeros((n_classes, n_source))  # (K, Z) P(y, z)
    np.add.at(joint, (codes, z), 1.0 / len(codes))
    cond = joint / joint.sum(axis=0)  # P(y | z); every z here occurs at least once
    nonzero = joint > 0  # 0 log 0 = 0
    return float(np.sum(joint[nonzero] * np.log(cond[nonzero])))


def h_score(features: ArrayLike, labels: ArrayLike) -> float:
    """H-score: how much of the feature covariance the class means explain.

    Bao, Li, Huang, Zheng, Zhang, Wang. "An Information-Theoretic Approach to Transferability
    in Task Transfer Learning", ICIP 2019. ``cov(f)`` is inverted with ``np.linalg.pinv``,
    dropping eigenvalues below max(n, D) * machine epsilon times the largest: constant or
    duplicated feature columns then do not blow the score up. When D >= n - 1 every labelling
    is explained exactly and the score is K - 1 whatever the features.

    Args:
        features: (n_samples, n_features) features of the target training set.
        labels: (n_samples,) integer class labels; at least 2 distinct classes.

    Returns:
        The H-score, between 0 and K - 1 (higher is better).

    Example:
        >>> features = np.array([[1.0], [3.0], [5.0], [7.0]])
        >>> round(h_score(features, np.array([0, 0, 1, 1])), 6)
        0.8
    """
    codes, n_classes = _check_labels("h_score", labels)
    f = _check_matrix("h_score", "features", features, len(codes))
    n, d = f.shape
    f = f - f.mean(axis=0)
    counts = np.bincount(codes).astype(np.float64)
    class_means = np.zeros((n_classes, d))
    np.add.at(class_means, codes, f)
    class_means /= counts[:, None]
    g = class_means[codes]  # (n, D) E[f | y_i]
    # The 1/n of both covariances cancels in the trace, so it is left out.
    cov_f_inv = np.linalg.pinv(f.T @ f, rcond=max(n, d) * np.finfo(np.float64).eps,
                               hermitian=True)
    return float(np.trace(cov_f_inv @ (g.T @ g)))
