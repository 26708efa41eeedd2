"""The recipe table: which fine-tuning recipe wins at one small fixed budget, on real data.

On Animal-MNIST (``--n-per-class`` training and ``--n-val-per-class`` validation images per
class drawn from the training split, ``--n-test-per-class`` test images per class, all at
``--image-size`` pixels), for each pretrained backbone (EfficientNet-Lite0 and MobileNetV2, both
offline ImageNet weights) and each recipe, once per seed (the head's initialisation and the
batch order), this script fine-tunes a fresh copy, then measures on the test set:

- ``acc``: top-1 accuracy; ``acc_tta``: the same with ``tta="flip"`` (image + mirror);
- ``ece`` and ``ece_ts``: the expected calibration error (15 bins) before and after
  ``tk.calibrate`` fitted one temperature on the validation images; ``T`` the temperature;
- ``train_s`` the wall seconds of ``finetune`` and ``train_cpu_s`` its CPU seconds (on a shared
  machine the wall time mostly measures the other processes; CPU seconds are the cost).

Recipes, all with AdamW, lr 1e-3, cosine, augmentation on, batch 32 (``FT`` = ``--epochs``
epochs of the whole model, ``P`` = ``--probe-epochs`` epochs of a probe on cached features):
``linear_probe`` (2 x P epochs), ``full`` (FT), ``gradual`` (FT), ``lp_ft`` (P + FT, backbone at
0.1 lr), ``lp_ft+llrd`` (``layer_decay=0.75``), ``lp_ft+wise`` (``wise_alpha="auto"`` on the
validation images), ``lp_ft+ema`` (``ema=0.999, ema_warmup=True``), ``lp_ft+mixup``
(``mixup=0.2``; no feature cache then), ``lora`` (FT epochs of rank-8 adapters on every
Linear and 1x1 convolution plus the head, frozen base, lr ``--lora-lr`` = 1e-3: 5e-3, as in
peft's image-classification example, stayed at chance on Lite0). Each run appends one JSON line
to ``--out``; rerun with ``--report`` to print the table (mean and [min, max] over the seeds
done, and each recipe's per-seed difference to ``lp_ft``) from it.

The defaults (300 / 100 / 300 images, 3 seeds: 54 runs) took 17 min 43 s at one thread on a
shared 2-core machine (docs/recipes.md has the table). Run at one thread (the machine is
shared)::

    OMP_NUM_THREADS=1 nohup python benchmarks/recipes.py --out benchmarks/recipes.jsonl &
    python benchmarks/recipes.py --report --out benchmarks/recipes.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

import transferkit as tk  # noqa: E402

RECIPES = {
    "linear_probe": lambda a: dict(strategy="linear_probe", epochs=2 * a.probe_epochs),
    "lp_ft": lambda a: dict(strategy="lp_ft"),
    "full": lambda a: dict(strategy="full"),
    "lp_ft+wise": lambda a: dict(strategy="lp_ft", wise_alpha="auto"),
    "lp_ft+ema": lambda a: dict(strategy="lp_ft", ema=0.999, ema_warmup=True),
    "lp_ft+llrd": lambda a: dict(strategy="lp_ft", layer_decay=0.75),
    "gradual": lambda a: dict(strategy="gradual"),
    "lp_ft+mixup": lambda a: dict(strategy="lp_ft", mixup=0.2),
    "lora": lambda a: dict(strategy="lora", lora_rank=8, lr=a.lora_lr),
}
BACKBONES = ("mobilenet_v2", "efficientnet_lite0")


def _data(a):
    train, test, _ = tk.datasets.animal_mnist(
        n_per_class=a.n_per_class + a.n_val_per_class, n_per_class_test=a.n_test_per_class,
        seed=0)
    frac = a.n_val_per_class / (a.n_per_class + a.n_val_per_class)
    tr, val = tk.stratified_split(train, frac, seed=0)
    return tr, val, test


def run_one(a, base, name, recipe, seed, data) -> dict:
    tr, val, test = data
    model = tk.replace_head(copy.deepcopy(base), 10, seed=seed)
    opts = dict(epochs=a.epochs, probe_epochs=a.probe_epochs, image_size=a.image_size,
                batch_size=32, seed=seed, progress=False, channels_last=False,
                augment=True)  # the table's recipe: pinned, finetune's default is now off
    opts.update(RECIPES[recipe](a))
    if opts["strategy"] == "lp_ft":  # pinned too: lp_ft's default became 0.3 after the table
        opts.setdefault("backbone_lr_mult", 0.1)
    if opts["strategy"] == "linear_probe":
        opts.pop("probe_epochs")
    t0, c0 = time.perf_counter(), time.process_time()
    tk.finetune(model, tr, val, **opts)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    ev = dict(progress=False, channels_last=False, batch_size=100)
    r = tk.evaluate(model, test, **ev)
    r_tta = tk.evaluate(model, test, tta="flip", **ev)
    cal = tk.calibrate(model, val, batch_size=100)
    r_ts = tk.evaluate(model, test, **ev)
    return {"backbone": name, "recipe": recipe, "seed": seed, "acc": r.accuracy,
            "acc_tta": r_tta.accuracy, "ece": r.ece, "ece_ts": r_ts.ece,
            "T": cal.temperature, "train_s": train_s, "train_cpu_s": train_cpu,
            "n_train": len(tr), "n_val": len(val), "n_test": len(test),
            "image_size": a.image_size, "epochs": a.epochs, "probe_epochs": a.probe_epochs}


def _ms(vals: list[float], k: float = 100) -> str:
    """``mean [min, max]`` (scaled by ``k``); the mean alone for one value."""
    m = statistics.mean(vals) * k
    if len(vals) == 1:
        return f"{m:.1f}"
    return f"{m:.1f} [{min(vals) * k:.1f}, {max(vals) * k:.1f}]"


def report(path: Path) -> str:
    """The table of ``path``'s rows: per backbone and recipe, the mean and [min, max] over
    the seeds done, then each recipe's per-seed difference to ``lp_ft`` (same seed: same head
    initialisation and batch order)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return "no runs yet"
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["backbone"], r["recipe"]), []).append(r)
    r0 = rows[0]
    out = [f"Animal-MNIST, {r0['n_train']} training / {r0['n_val']} validation / "
           f"{r0['n_test']} test images at {r0['image_size']} px, FT = {r0['epochs']} epochs, "
           f"P = {r0['probe_epochs']} probe epochs; mean [min, max] over the seeds (n).", "",
           "| backbone | recipe | n | test acc % | acc + flip TTA % | ECE % | ECE after TS % "
           "| T | train CPU s | train wall s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(groups.items(), key=lambda kv: (kv[0][0], -statistics.mean(
        r["acc"] for r in kv[1])))
    for (bb, rec), rs in order:
        g = lambda k: [r[k] for r in rs]  # noqa: E731
        out.append(f"| {bb} | {rec} | {len(rs)} | {_ms(g('acc'))} | {_ms(g('acc_tta'))} | "
                   f"{_ms(g('ece'))} | {_ms(g('ece_ts'))} | {statistics.mean(g('T')):.2f} | "
                   f"{statistics.mean(g('train_cpu_s')):.0f} | "
                   f"{statistics.mean(g('train_s')):.0f} |")
    out += ["", "Paired by seed, test accuracy minus lp_ft's (points): mean [min, max]; "
            "flip TTA's gain over the same model.", "",
            "| backbone | recipe | n | minus lp_ft | flip TTA gain |", "|---|---|---|---|---|"]
    for (bb, rec), rs in order:
        base = {r["seed"]: r["acc"] for r in groups.get((bb, "lp_ft"), [])}
        diffs = [r["acc"] - base[r["seed"]] for r in rs if r["seed"] in base]
        tta = [r["acc_tta"] - r["acc"] for r in rs]
        out.append(f"| {bb} | {rec} | {len(rs)} | "
                   f"{_ms(diffs) if diffs and rec != 'lp_ft' else '-'} | {_ms(tta)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/recipes.jsonl"))
    p.add_argument("--report", action="store_true", help="print the table of --out and exit")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--n-per-class", type=int, default=30)
    p.add_argument("--n-val-per-class", type=int, default=10)
    p.add_argument("--n-test-per-class", type=int, default=30)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--probe-epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lora-lr", type=float, default=1e-3,
                   help="lr of the lora recipe (5e-3 stayed at chance on Lite0)")
    a = p.parse_args(argv)
    if a.report:
        print(report(a.out))
        return 0
    torch.set_num_threads(a.threads)
    unknown = set(a.recipes.split(",")) - set(RECIPES)
    if unknown:
        p.error(f"unknown recipes {sorted(unknown)}; known: {list(RECIPES)}")
    data = _data(a)
    bases = {n: tk.load_backbone(n, weights="DEFAULT") for n in a.backbones.split(",")}
    for seed in (int(s) for s in a.seeds.split(",")):  # every recipe once before the next seed
        for name, base in bases.items():
            for recipe in a.recipes.split(","):
                row = run_one(a, base, name, recipe, seed, data)
                with a.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(report(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
