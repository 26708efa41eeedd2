"""Do transferability scores rank backbones the way fine-tuning does? And how much faster?

For each candidate backbone, on the same target data:

1. score it with :func:`transferkit.selection.rank_backbones` (LogME, then H-score: each call extracts
   the features again, so each metric's time is complete on its own);
2. fine-tune it with one small fixed budget (``lp_ft``: a linear probe of at most
   ``--probe-epochs`` epochs, then ``--epochs`` epochs of the whole model at 0.1x the learning
   rate; no augmentation; ``--n-per-class`` training images per class at ``--image-size``
   pixels), once for each of ``--finetune-seeds`` (the head's initialisation and the order of
   the batches), and measure its accuracy on the test split (all of it by default).

Each backbone is built once, under ``torch.manual_seed(seed)``, and scored; every fine-tuning
run starts from a copy of that scored object, so a randomly initialised candidate is scored on
the very weights that its fine-tuning starts from. The ground truth of a candidate is its mean
test accuracy over the fine-tuning seeds: one run's accuracy moves by about a point from seed
to seed, as much as the pretrained candidates differ.

Each candidate and seed also gets a linear probe alone (``--probe-epochs`` epochs on the frozen
backbone, the same options otherwise), whose test accuracy is what the frozen features support:
the quantity the scores model directly, reported beside the fine-tuning ground truth.

Printed: one line per candidate, then Kendall's tau (tau-b, scipy) between each score and the
mean accuracies, the same tau against each seed's accuracies alone (its spread is the noise of
the ground truth) and against the mean linear-probe accuracies, and ``scoring_speedup`` =
seconds of fine-tuning all candidates once (the mean over seeds) / seconds of ranking them all
with LogME. Neither time includes building the backbones; the fine-tuning time excludes the
test evaluation. To scale the speedup to another budget, ``probe_over_scoring`` and
``epoch_over_scoring`` give the cost of the probe (with its feature-cache pass) and of one
epoch of the whole model, in units of the ranking:
speedup(E epochs) ~ probe_over_scoring + E * epoch_over_scoring.

On a shared machine, pin the thread pools to one thread each (oversubscribed OpenMP and BLAS
pools were 5-10x slower here)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/transferability_agreement.py \
        [--datasets animal_mnist,fashion_mnist] [--n-per-class 200] [--image-size 64] \
        [--epochs 3] [--finetune-seeds 0,1,2] [--json results.json]

Fashion-MNIST is used only where its files are installed (see transferkit.datasets).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Any

import torch
from scipy.stats import kendalltau

from _common import machine

import transferkit as tk  # noqa: E402  (after _common puts the checkout on the path)
from transferkit import datasets  # noqa: E402
from transferkit.errors import DataError  # noqa: E402
from transferkit.selection.rank_backbones import rank_backbones  # noqa: E402

#: (name, weights): four pretrained backbones of two families (the EfficientNet-Lites and
#: MobileNetV2, ImageNet weights from pip packages, offline) and three randomly initialised
#: architectures.
CANDIDATES: tuple[tuple[str, str | None], ...] = (
    ("efficientnet_lite0", "DEFAULT"),
    ("efficientnet_lite1", "DEFAULT"),
    ("efficientnet_lite2", "DEFAULT"),
    ("mobilenet_v2", "DEFAULT"),
    ("efficientnet_lite0", None),
    ("resnet18", None),
    ("mobilenet_v3_small", None),
)
METRICS = ("logme", "h_score")


def _label(name: str, weights: str | None) -> str:
    return f"{name} ({'pretrained' if weights else 'random init'})"


def _build(candidates: tuple[tuple[str, str | None], ...], seed: int) -> list[tk.Backbone]:
    backbones = []
    for name, weights in candidates:
        torch.manual_seed(seed)  # the same random init for scoring and fine-tuning
        backbones.append(tk.load_backbone(name, weights=weights))
    return backbones


def _score(backbones: list[tk.Backbone], labels: list[str], train: Any, metric: str,
           image_size: int, progress: bool) -> dict[str, dict[str, float]]:
    """``{label: {"score", "seconds", "num_features"}}`` from one rank_backbones call."""
    ranking = rank_backbones(backbones, train, metric=metric, image_size=image_size, progress=progress)
    # Rows carry names and weights, not objects; (name, weights) differ between candidates.
    rows = {(r.name, r.weights): r for r in ranking.rows}
    if len(rows) != len(backbones):
        raise ValueError("transferability_agreement: give each (name, weights) only once.")
    out: dict[str, dict[str, float]] = {}
    for b, lab in zip(backbones, labels):
        row = rows[(b.name, b.weights_tag)]
        out[lab] = {"score": row.score, "seconds": row.seconds,
                    "num_features": row.num_features}
    return out


def _finetune(backbone: tk.Backbone, train: Any, test: Any, num_classes: int, seed: int,
              options: dict[str, Any]) -> dict[str, float]:
    """Test accuracy and seconds of one fine-tuning run (whole, and per full epoch).

    Runs on a copy of ``backbone``, which stays as it was scored for the next seed.
    """
    torch.manual_seed(seed)  # the new head's initialisation
    model = tk.replace_head(copy.deepcopy(backbone), num_classes)
    start = time.perf_counter()
    history = tk.finetune(model, train, seed=seed, **options)
    seconds = time.perf_counter() - start
    full = [r["seconds"] for r in history.to_list() if r["phase"] == "finetune"]
    report = tk.evaluate(model, test, progress=False)
    return {"test_accuracy": report.accuracy, "finetune_seconds": seconds,
            # the feature-cache pass and the linear probe, then one epoch of the whole model
            "probe_seconds": seconds - sum(full), "epoch_seconds": sum(full) / len(full)}


def _probe(backbone: tk.Backbone, train: Any, test: Any, num_classes: int, seed: int,
           options: dict[str, Any]) -> float:
    """Test accuracy of a linear probe alone (``probe_epochs`` epochs, frozen backbone): what
    the frozen features support, the quantity the scores model directly."""
    torch.manual_seed(seed)
    model = tk.replace_head(copy.deepcopy(backbone), num_classes)
    probe = {k: v for k, v in options.items() if k != "probe_epochs"}
    tk.finetune(model, train, seed=seed, **{**probe, "strategy": "linear_probe",
                                            "epochs": options["probe_epochs"]})
    return tk.evaluate(model, test, progress=False).accuracy


def _tau(scores: list[float], accuracies: list[float]) -> float:
    return float(kendalltau(scores, accuracies).statistic)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def run_dataset(dataset: str, *, candidates: tuple[tuple[str, str | None], ...] = CANDIDATES,
                n_per_class: int = 200, n_per_class_test: int | None = None,
                image_size: int = 64, epochs: int = 3, probe_epochs: int = 5,
                batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                finetune_seeds: tuple[int, ...] = (0, 1, 2), probe: bool = True,
                progress: bool = False, verbose: bool = True) -> dict[str, Any]:
    """The study on one dataset; returns its figures (see :func:`run`)."""
    if not finetune_seeds:
        raise ValueError("transferability_agreement: give at least one fine-tuning seed.")
    train, test, classes = getattr(datasets, dataset)(
        n_per_class=n_per_class, n_per_class_test=n_per_class_test, seed=seed)
    labels = [_label(n, w) for n, w in candidates]
    backbones = _build(candidates, seed)
    scores = {m: _score(backbones, labels, train, m, image_size, progress) for m in METRICS}
    options = dict(strategy="lp_ft", epochs=epochs, probe_epochs=probe_epochs,
                   batch_size=batch_size, lr=lr, image_size=image_size, augment=False,
                   backbone_lr_mult=0.1,  # the study's recipe (lp_ft's default is now 0.3)
                   progress=progress)
    rows = []
    for backbone, label in zip(backbones, labels):
        runs = [_finetune(backbone, train, test, len(classes), s, options)
                for s in finetune_seeds]
        accs = [r["test_accuracy"] for r in runs]
        probes = [_probe(backbone, train, test, len(classes), s, options)
                  for s in finetune_seeds] if probe else None
        row = {"candidate": label, "num_features": scores["logme"][label]["num_features"],
               **{m: scores[m][label]["score"] for m in METRICS},
               **{f"{m}_seconds": scores[m][label]["seconds"] for m in METRICS},
               "test_accuracy": _mean(accs),
               "test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "test_accuracies": accs,
               "probe_accuracy": _mean(probes) if probes else None, "probe_accuracies": probes,
               # one fine-tuning run's cost: the mean over the seeds
               **{k: _mean([r[k] for r in runs])
                  for k in ("finetune_seconds", "probe_seconds", "epoch_seconds")}}
        rows.append(row)
        if verbose:
            print(f"{label:34s} logme {row['logme']:8.4f}  h_score {row['h_score']:7.4f}  "
                  f"test_accuracy {row['test_accuracy']:.4f} +- {row['test_accuracy_std']:.4f}"
                  f" ({', '.join(f'{a:.4f}' for a in accs)})"
                  + (f"  probe_accuracy {row['probe_accuracy']:.4f}" if probes else "")
                  + f"  score_s "
                  f"{row['logme_seconds']:6.1f}  finetune_s {row['finetune_seconds']:7.1f}",
                  flush=True)
    accs = [r["test_accuracy"] for r in rows]
    finetune_total = sum(r["finetune_seconds"] for r in rows)
    result = {
        "dataset": dataset, "n_train": len(train), "n_test": len(test),
        "settings": {"n_per_class": n_per_class, "n_per_class_test": n_per_class_test,
                     "image_size": image_size, "init_seed": seed,
                     "finetune_seeds": list(finetune_seeds),
                     **{k: v for k, v in options.items() if k != "progress"}},
        "candidates": rows,
        **{f"kendall_tau_{m}": _tau([r[m] for r in rows], accs) for m in METRICS},
        # the same tau against each seed's accuracies alone: the noise of the ground truth
        **{f"kendall_tau_{m}_per_seed": [
            _tau([r[m] for r in rows], [r["test_accuracies"][i] for r in rows])
            for i in range(len(finetune_seeds))] for m in METRICS},
        # and against the accuracy of a linear probe alone (frozen features, no fine-tuning)
        **{f"kendall_tau_{m}_vs_probe": _tau([r[m] for r in rows],
                                             [r["probe_accuracy"] for r in rows])
           if probe else None for m in METRICS},
        "scoring_seconds": sum(r["logme_seconds"] for r in rows),
        "h_score_scoring_seconds": sum(r["h_score_seconds"] for r in rows),
        "finetune_seconds": finetune_total,
    }
    result["scoring_speedup"] = finetune_total / result["scoring_seconds"]
    # What each part of fine-tuning costs in units of the LogME ranking, to scale to other
    # budgets: speedup(E epochs) = probe_over_scoring + E * epoch_over_scoring.
    result["probe_over_scoring"] = sum(r["probe_seconds"] for r in rows) / result[
        "scoring_seconds"]
    result["epoch_over_scoring"] = sum(r["epoch_seconds"] for r in rows) / result[
        "scoring_seconds"]
    if verbose:
        for m in METRICS:
            per_seed = ", ".join(f"{t:.3f}" for t in result[f"kendall_tau_{m}_per_seed"])
            vs_probe = result[f"kendall_tau_{m}_vs_probe"]
            print(f"kendall_tau_{m}: {result[f'kendall_tau_{m}']:.3f} (per seed: {per_seed}"
                  + (f"; against the linear probe: {vs_probe:.3f})" if probe else ")"))
        print(f"scoring_speedup: {result['scoring_speedup']:.1f}")
        print(f"probe_over_scoring: {result['probe_over_scoring']:.2f}")
        print(f"epoch_over_scoring: {result['epoch_over_scoring']:.2f}")
    return result


def run(datasets_: tuple[str, ...] = ("animal_mnist", "fashion_mnist"), **options: Any
        ) -> dict[str, Any]:
    """The study on every installed dataset of ``datasets_``.

    Args:
        datasets_: names of :mod:`transferkit.datasets` loaders; one that is not installed is
            reported under ``"skipped"``.
        **options: passed to :func:`run_dataset` (``n_per_class``, ``n_per_class_test``
            (``None``: the whole test split), ``image_size``, ``epochs``, ``probe_epochs``,
            ``batch_size``, ``lr``, ``seed`` (data subset and random initialisations),
            ``finetune_seeds``, ``candidates``, ...).

    Returns:
        ``{"machine", "torch_threads", "results": [per-dataset dicts], "skipped": {name:
        reason}}``; each result has ``candidates`` (scores, mean accuracy and its standard
        deviation over the seeds, each seed's accuracy, seconds), ``kendall_tau_logme``,
        ``kendall_tau_h_score``, the same per seed, and ``scoring_speedup``.
    """
    out: dict[str, Any] = {"machine": machine(), "torch_threads": torch.get_num_threads(),
                           "results": [], "skipped": {}}
    verbose = options.get("verbose", True)
    for name in datasets_:
        try:
            getattr(datasets, name)(n_per_class=1, n_per_class_test=1)
        except DataError as exc:
            out["skipped"][name] = str(exc)
            if verbose:
                print(f"{name}: skipped ({str(exc).split('. Fix')[0]})")
            continue
        if verbose:
            print(f"== {name}")
        out["results"].append(run_dataset(name, **options))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="animal_mnist,fashion_mnist")
    p.add_argument("--n-per-class", type=int, default=200)
    p.add_argument("--n-per-class-test", type=int, default=None,
                   help="test images per class (default: the whole test split)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--probe-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data subset and of the random initialisations")
    p.add_argument("--finetune-seeds", default="0,1,2",
                   help="fine-tune each candidate once per seed (comma-separated)")
    p.add_argument("--no-probe", action="store_true",
                   help="skip the linear probes alone (they do not depend on --epochs)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    print(machine())
    start = time.perf_counter()
    result = run(tuple(d.strip() for d in args.datasets.split(",") if d.strip()),
                 n_per_class=args.n_per_class, n_per_class_test=args.n_per_class_test,
                 image_size=args.image_size, epochs=args.epochs, probe_epochs=args.probe_epochs,
                 batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                 finetune_seeds=tuple(int(x) for x in args.finetune_seeds.split(",") if x),
                 probe=not args.no_probe, progress=args.progress)
    result["wall_seconds"] = time.perf_counter() - start
    print(f"wall_seconds: {result['wall_seconds']:.0f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
