"""Can an encoder's features tell an animal_scenes animal's class? A cheap check of the data.

One-animal scenes (``max_animals=1``) of the *training* photos and silhouettes: ``--n``
scenes with ``seed=0`` to fit, 500 with ``seed=1`` to score (never the test split). Each
scene's pooled EfficientNet-Lite0 features (ImageNet weights, and random init for reference)
go to scikit-learn's ``LogisticRegression``; printed: the validation accuracy of the animal's
class (chance: 0.10) with the first 300 and with all ``--n`` scenes. ``--option`` passes
``animal_scenes`` keyword options (``--option background_blur=0 --option outline=0``).

    OMP_NUM_THREADS=1 python benchmarks/scenes_probe.py --threads 1
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time

from _common import start

import numpy as np
import torch

import transferkit as tk
from transferkit.data.preprocess import BatchPrep


def _features(backbone, images: torch.Tensor) -> np.ndarray:
    """Pooled features of scenes already at the crop size: the library's preprocessing, whose
    geometry is then the identity (resize and crop to the scene's own side)."""
    side = images.shape[-1]
    prep = BatchPrep(dataclasses.replace(backbone.data_config, input_size=(3, side, side),
                                         resize_size=side), train=False)
    with torch.inference_mode():
        return torch.cat([backbone(prep(images[i:i + 100])).flatten(1)
                          for i in range(0, len(images), 100)]).numpy()


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=2000, help="scenes to fit the probe on")
    p.add_argument("--option", action="append", default=[],
                   help="an animal_scenes option, name=value (repeatable)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    start(a)
    options = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in a.option)}
    classes = tk.datasets.ANIMAL_SCENES_CLASSES
    fit, score = (tk.datasets.animal_scenes(n=n, n_test=1, size=a.size, seed=seed,
                                            max_animals=1, **options).train
                  for n, seed in ((a.n, 0), (500, 1)))
    labels = [np.array([classes.index(s["animals"][0][0]) for s in ds.sources])
              for ds in (fit, score)]
    print(f"animal_scenes options: {options or 'defaults'}, {a.size} px")
    for weights in ("DEFAULT", None):
        t0 = time.perf_counter()
        torch.manual_seed(0)  # the random-init side's weights
        backbone = tk.load_backbone("efficientnet_lite0", weights=weights).eval()
        f_fit, f_score = _features(backbone, fit.data), _features(backbone, score.data)
        for n in sorted({min(300, a.n), a.n}):
            clf = LogisticRegression(max_iter=2000).fit(f_fit[:n], labels[0][:n])
            print(f"{'ImageNet' if weights else 'random init'} features, {n} scenes: class "
                  f"accuracy {clf.score(f_score, labels[1]):.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
