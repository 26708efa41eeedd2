"""``rank_backbones``: score candidate backbones on the target data, before fine-tuning any.

Each candidate's frozen backbone runs once over the target training data (eval mode, no
augmentation, the feature-cache machinery of :func:`transferkit.finetune`) and its pooled
features are scored with a transferability score from :mod:`transferkit.transferability`:

- ``"logme"`` and ``"h_score"`` need only the features and the labels: every backbone works;
- ``"leep"`` and ``"nce"`` need the *source* classifier's predictions (its ImageNet head),
  which transferkit backbones drop. They are supported for ``efficientnet_lite0/1/2`` with
  their pretrained weights, whose head ships in the weights package; for anything else, call
  :func:`transferkit.transferability.leep` / ``nce`` with the source model's own outputs.

Candidates whose pretrained weights cannot be obtained here (offline, weights package missing)
are reported in the :class:`Ranking` as skipped, with the reason, and the others are ranked.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_int
from ..backbones import Backbone, get_backbone_spec, list_backbones
from ..data.sources import BatchPrep, as_source, default_workers, resolve_device
from ..errors import UnknownNameError, WeightsUnavailableError
from ..training.feature_cache import build_cache
from ..load_backbone import load_backbone
from ..replace_head import replace_head
from ..transfer_model import TransferModel
from .transferability import h_score, leep, logme, nce

__all__ = ["METRICS", "Ranking", "RankingRow", "rank_backbones"]

#: The scores ``rank_backbones`` accepts; every one is "higher is better".
METRICS = ("logme", "h_score", "leep", "nce")
_SOURCE_METRICS = ("leep", "nce")  # need the pretraining head's predictions
_LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
_WILDCARD = frozenset("*?[")


# -- the result ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RankingRow:
    """One candidate of a :class:`Ranking`.

    Attributes:
        name: the backbone's registered name.
        weights: the weights it was scored with (a tag such as ``"IMAGENET1K"``, a path), or
            ``None`` for random initialisation.
        score: the transferability score (higher is better); ``None`` when skipped.
        metric: the score's name.
        num_features: size of the pooled features that were scored.
        seconds: wall time spent on this candidate (building it, extracting, scoring).
        skipped: why the candidate was not scored (its weights are unavailable), else ``None``.
    """

    name: str
    weights: str | None
    score: float | None
    metric: str
    num_features: int | None
    seconds: float
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ranking:
    """Candidates sorted best first by their score; skipped candidates come last.

    Attributes:
        rows: the :class:`RankingRow` of every candidate, best first.
        metric: the score that ranked them.
        n_samples, num_classes: the data they were scored on.

    Example:
        >>> ranking.best.name  # doctest: +SKIP
        'efficientnet_lite0'
        >>> print(ranking)  # doctest: +SKIP
    """

    def __init__(self, rows: Iterable[RankingRow], metric: str, *, n_samples: int,
                 num_classes: int) -> None:
        rows = list(rows)
        scored = sorted((r for r in rows if r.skipped is None), key=lambda r: -r.score)
        self.rows: list[RankingRow] = scored + [r for r in rows if r.skipped is not None]
        self.metric = metric
        self.n_samples = n_samples
        self.num_classes = num_classes

    @property
    def scored(self) -> list[RankingRow]:
        """The rows that have a score, best first."""
        return [r for r in self.rows if r.skipped is None]

    @property
    def skipped(self) -> list[RankingRow]:
        """The rows of candidates that could not be scored."""
        return [r for r in self.rows if r.skipped is not None]

    @property
    def best(self) -> RankingRow:
        """The candidate with the highest score."""
        if not self.scored:
            raise ValueError("Ranking.best: no candidate was scored (all were skipped).")
        return self.rows[0]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RankingRow]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> RankingRow:
        return self.rows[i]

    def to_list(self) -> list[dict[str, Any]]:
        """Every row as a dict, best first (JSON-ready)."""
        return [r.to_dict() for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """``{"metric", "n_samples", "num_classes", "rows"}`` (JSON-ready)."""
        return {"metric": self.metric, "n_samples": self.n_samples,
                "num_classes": self.num_classes, "rows": self.to_list()}

    def __str__(self) -> str:
        head = (f"Ranking by {self.metric} on {self.n_samples} samples, {self.num_classes} "
                f"classes (higher is better)")
        cells = [("rank", "backbone", "weights", self.metric, "features", "seconds")]
        for i, r in enumerate(self.rows, 1):
            weights = "random init" if r.weights is None else str(r.weights)
            if r.skipped is None:
                cells.append((str(i), r.name, weights, f"{r.score:.4f}", str(r.num_features),
                              f"{r.seconds:.1f}"))
            else:
                cells.append(("-", r.name, weights, "skipped", "-", f"{r.seconds:.1f}"))
        widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
        left = (False, True, True, False, False, False)
        lines = ["  ".join(c.ljust(w) if lj else c.rjust(w)
                           for c, w, lj in zip(row, widths, left)).rstrip() for row in cells]
        notes = [f"  skipped {r.name}: {r.skipped}" for r in self.skipped]
        return "\n".join([head, *lines, *notes])

    def __repr__(self) -> str:
        order = ", ".join(r.name for r in self.scored)
        return f"Ranking(metric={self.metric!r}, [{order}], skipped={len(self.skipped)})"


# -- candidates ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    name: str
    weights: Any  # what load_backbone gets: None, "DEFAULT", a tag, a path
    backbone: Backbone | None = None  # given as an object: used as it is


def _default_weights(name: str) -> str | None:
    """A plain name means its default pretrained weights, where the backbone has any."""
    spec = get_backbone_spec(name)  # an unknown name fails here, before any work
    return "DEFAULT" if spec.family in ("torchvision", "timm") or spec.pretrained_tags else None


def _resolve(candidates: object) -> list[_Candidate]:
    """Expand names, ``(name, weights)`` pairs, wildcards and objects into candidates."""
    if isinstance(candidates, (str, Backbone, TransferModel)):
        candidates = [candidates]
    if not isinstance(candidates, Iterable):
        raise TypeError(f"rank_backbones: candidates must be a list of backbone names, "
                        f"(name, weights) pairs or backbones, got {type(candidates).__name__}.")
    out: list[_Candidate] = []
    for i, c in enumerate(candidates):
        if isinstance(c, TransferModel):
            c = c.backbone
        if isinstance(c, Backbone):
            out.append(_Candidate(c.name, c.weights_tag, c))
        elif isinstance(c, str) and _WILDCARD & set(c):
            names = list_backbones(c)
            if not names:
                raise UnknownNameError(f"rank_backbones: the pattern {c!r} matches no "
                                       "registered backbone. See transferkit.list_backbones().")
            out += [_Candidate(n, _default_weights(n)) for n in names]
        elif isinstance(c, str):
            out.append(_Candidate(c, _default_weights(c)))
        elif isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str):
            get_backbone_spec(c[0])
            out.append(_Candidate(c[0], c[1]))
        else:
            raise TypeError(
                f"rank_backbones: candidate #{i} must be a backbone name (wildcards allowed), "
                f"a (name, weights) pair or a Backbone, got {type(c).__name__} {c!r}. A single "
                "pair goes in a list: candidates=[('resnet18', None)]."
            )
    if not out:
        raise ValueError("rank_backbones: candidates is empty; give at least one backbone "
                         "name, (name, weights) pair or Backbone.")
    return out


def _check_source_head(c: _Candidate, metric: str) -> None:
    """Fail early when ``metric`` needs a pretraining head that ``c`` cannot have."""
    pretrained = c.backbone is not None or c.weights in ("DEFAULT", "IMAGENET1K")
    if c.name in _LITE and pretrained:
        return
    raise ValueError(
        f"rank_backbones: metric={metric!r} needs the source model's ImageNet classifier, "
        f"which transferkit backbones drop; rank_backbones has it only for {', '.join(_LITE)} "
        f"with their pretrained weights, not for {c.name!r} (weights {c.weights!r}). Use "
        f"metric='logme' or 'h_score', or pass the source model's softmax outputs to "
        f"transferkit.transferability.{metric}() yourself."
    )


def _source_classifier(backbone: Backbone) -> nn.Module:
    """The ImageNet head of a pretrained EfficientNet-Lite, checked to belong to its body."""
    from ..backbones.efficientnet_lite import build_efficientnet_lite

    full = build_efficientnet_lite(int(backbone.name[-1]), pretrained=True)
    body = {k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")}
    mine = backbone.model.state_dict()
    if body.keys() != mine.keys() or any(not torch.equal(v, mine[k].cpu())
                                         for k, v in body.items()):
        raise ValueError(
            f"rank_backbones: the weights of this {backbone.name} are not its pretrained "
            "ImageNet weights (fine-tuned?), so the ImageNet classifier that LEEP and NCE need "
            "no longer belongs to them. Use metric='logme' or 'h_score'."
        )
    return full.classifier.eval()


# -- features and scores -------------------------------------------------------------------
def _features(backbone: Backbone, data: Any, *, image_size: int | None, batch_size: int,
              device: torch.device, progress: bool, desc: str) -> tuple[Tensor, Tensor]:
    """Pooled features ``(N, num_features)`` of ``data`` and its targets ``(N,)``."""
    config = backbone.data_config
    if image_size is not None:
        config = config.with_image_size(image_size)
    source = as_source(data, config, train=False, augment=False)
    # A linear head average-pools, so build_cache keeps pooled vectors; the head never runs.
    model = replace_head(backbone, 1)
    first = next(backbone.parameters(), None)
    home = first.device if first is not None else device
    backbone.to(device)
    try:
        cache = build_cache(model, source, prep_for_view=lambda v: BatchPrep(config, train=False),
                            views=1, batch_size=batch_size, device=device,
                            num_workers=default_workers(source), progress=progress, desc=desc)
    finally:
        backbone.to(home)
    return cache.features[0], cache.targets


def _score(metric: str, features: Tensor, labels: Tensor, backbone: Backbone) -> float:
    if metric == "logme":
        return logme(features, labels)
    if metric == "h_score":
        return h_score(features, labels)
    with torch.inference_mode():
        probs = torch.softmax(_source_classifier(backbone)(features.float()), dim=1)
    return leep(probs, labels) if metric == "leep" else nce(probs.argmax(dim=1), labels)


def _warn_few_samples(metric: str, n: int, d: int, name: str) -> None:
    if metric in ("logme", "h_score") and n <= d:
        warnings.warn(
            f"rank_backbones: {name} has {d} features but the data only {n} samples. With "
            f"n <= D every labelling is fitted exactly: h_score is K - 1 whatever the "
            f"features, and logme rests on its prior alone (see transferkit.transferability). "
            f"Score on more samples than features.", stacklevel=3)


def _check_int(name: str, value: object, low: int) -> None:
    check_int("rank_backbones", name, value, low)


# -- the verb --------------------------------------------------------------------------------
def rank_backbones(
    candidates: str | Backbone | Sequence[str | tuple[str, Any] | Backbone],
    data: Any,
    *,
    metric: str = "logme",
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
    skip_unavailable: bool = True,
) -> Ranking:
    """Rank pretrained backbones for ``data`` by a transferability score, without fine-tuning.

    Each candidate is built (one at a time), runs once over ``data`` in eval mode with its
    evaluation preprocessing, and its pooled features are scored against the labels.

    Args:
        candidates: a list of: backbone names, meaning their default pretrained weights
            (``"efficientnet_lite0"``; a backbone without pretrained tags is built as its
            builder's default); ``(name, weights)`` pairs, ``weights`` as in
            :func:`transferkit.load_backbone` (``("resnet18", None)`` is random init);
            wildcards (``"efficientnet_lite*"``, see :func:`transferkit.list_backbones`), each
            match with its default weights; :class:`~transferkit.backbones.Backbone` objects
            (or ``TransferModel``s, whose backbone is used), as they are. A single name or
            wildcard may be passed alone.
        data: the target *training* data with class labels, in any form
            :func:`transferkit.finetune` takes (``(X, y)``, a Dataset, an image folder, a
            DataLoader used as it is). Score on more samples than the features have dimensions.
        metric: ``"logme"`` (default), ``"h_score"``, ``"leep"`` or ``"nce"``; see
            :mod:`transferkit.transferability` for what each means and when it misleads.
            ``"leep"``/``"nce"`` need the pretraining classifier: only pretrained
            ``efficientnet_lite0/1/2`` have it here.
        image_size: crop size to extract features at (default: each backbone's own); use the
            size you will fine-tune at.
        batch_size: images per forward pass.
        device: ``None``: CUDA when present, else the CPU. A backbone object goes back to its
            own device afterwards.
        progress: a tqdm bar per candidate.
        skip_unavailable: a candidate whose pretrained weights cannot be obtained here
            (:class:`~transferkit.errors.WeightsUnavailableError`) is listed as skipped with
            the reason; ``False`` raises instead.

    Returns:
        A :class:`Ranking`: rows best first with ``score``, ``num_features`` and ``seconds``.

    Raises:
        ValueError: an unknown metric, no candidates, ``leep``/``nce`` for a backbone without
            its source head, or labels the score cannot use (see the score's own errors).
        UnknownNameError: an unknown backbone name, or a wildcard that matches nothing.
        WeightsUnavailableError: no candidate could be scored (every one was skipped), or
            one was unavailable and ``skip_unavailable=False``.

    Example:
        >>> import torch, transferkit as tk
        >>> X, y = torch.rand(40, 3, 32, 32), torch.arange(40) % 2
        >>> ranking = tk.rank_backbones([("resnet18", None), ("mobilenet_v3_small", None)],
        ...                             (X, y), progress=False)
        >>> len(ranking), ranking.best.metric
        (2, 'logme')
    """
    if metric not in METRICS:
        raise ValueError(f"rank_backbones: metric must be one of {list(METRICS)}, got "
                         f"{metric!r}.")
    if image_size is not None:
        _check_int("image_size", image_size, 8)
    _check_int("batch_size", batch_size, 1)
    resolved = _resolve(candidates)
    if metric in _SOURCE_METRICS:
        for c in resolved:
            _check_source_head(c, metric)
    dev = resolve_device(device)
    rows: list[RankingRow] = []
    n = k = 0
    for c in resolved:
        start = time.perf_counter()
        try:
            backbone = (c.backbone if c.backbone is not None
                        else load_backbone(c.name, weights=c.weights))
        except WeightsUnavailableError as exc:
            if not skip_unavailable:
                raise
            rows.append(RankingRow(c.name, _weights_label(c.weights), None, metric, None,
                                   time.perf_counter() - start, skipped=str(exc)))
            continue
        feats, labels = _features(backbone, data, image_size=image_size, batch_size=batch_size,
                                  device=dev, progress=progress, desc=c.name)
        _warn_few_samples(metric, len(feats), feats.shape[1], c.name)
        score = _score(metric, feats, labels, backbone)
        n, k = len(labels), len(torch.unique(labels))
        rows.append(RankingRow(c.name, backbone.weights_tag, score, metric, feats.shape[1],
                               time.perf_counter() - start))
        del backbone, feats  # one candidate in memory at a time
    if all(r.skipped is not None for r in rows):
        reasons = "; ".join(f"{r.name}: {r.skipped}" for r in rows)
        raise WeightsUnavailableError(f"rank_backbones: no candidate could be scored, every "
                                      f"one's weights are unavailable here. {reasons}")
    return Ranking(rows, metric, n_samples=n, num_classes=k)


def _weights_label(weights: Any) -> str | None:
    """How a skipped row shows the weights it asked for."""
    if weights is None or isinstance(weights, str):
        return weights
    return "state_dict" if isinstance(weights, Mapping) else str(weights)
