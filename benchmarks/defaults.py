"""The README quickstart call (finetune's defaults) against the demo's tuned lp_ft call.

The demo's task: EfficientNet-Lite0 (ImageNet) -> Animal-MNIST at 64 px, the demo's split
(7,200 training, 800 validation, 2,000 test images), the same seeded head for every run.
Each variant runs once per round, the order rotating between rounds; printed: test accuracy,
training seconds, and the time ratio against the demo's call of the same round.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/defaults.py               # the demo's task
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/defaults.py --n-per-class 100 --variants \
        demo,quickstart                                                    # a quick look

Variants: ``demo`` (the demo's options), ``quickstart`` (``strategy="lp_ft", epochs=3,
image_size=64``, everything else default), and quickstart with one option changed
(``mult03``: backbone_lr_mult=0.3, ``b64``: batch_size=64, ``noaug``: augment=False,
``lr3e3``: lr=3e-3) or two (``mult03_b64``, ``mult03_noaug``). ``demo`` runs the demo's options
at the quickstart's 3 fine-tuning epochs (the demo itself runs 2, for its time budget), so the
two calls differ only in the options the demo tunes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.cli.demo import DemoConfig, _load_data, _options  # noqa: E402

QUICKSTART = {"strategy": "lp_ft", "epochs": 3, "image_size": 64}
VARIANTS = {
    "quickstart": {},
    "mult03": {"backbone_lr_mult": 0.3},
    "b64": {"batch_size": 64},
    "noaug": {"augment": False},
    "lr3e3": {"lr": 3e-3},
    "mult03_b64": {"backbone_lr_mult": 0.3, "batch_size": 64},
    "mult03_noaug": {"backbone_lr_mult": 0.3, "augment": False},
}


def options(name: str) -> dict:
    if name == "demo":
        # the demo's options at the quickstart's number of epochs: only the tuned options differ
        cfg = DemoConfig(progress=False, epochs=QUICKSTART["epochs"])
        return {**_options("lp_ft", cfg), "progress": False}
    return {**QUICKSTART, **VARIANTS[name], "progress": False}


def run(name: str, train, val, test, classes) -> dict:
    backbone = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    model = tk.replace_head(backbone, len(classes), class_names=classes, seed=0)
    opts = options(name)
    t0 = time.perf_counter()
    history = tk.finetune(model, train, val, **opts)
    seconds = time.perf_counter() - t0
    report = tk.evaluate(model, test, progress=False, batch_size=128)
    return {"variant": name, "test_accuracy": float(report.accuracy), "train_seconds": seconds,
            "probe_epochs": history["phase"].count("probe"),
            "memory_format": history.memory_format,
            "format_choice_seconds": sum((c.get("cost_seconds") or 0.0)
                                         for c in history.memory_format),
            "options": {k: v for k, v in opts.items() if k != "progress"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="demo,quickstart")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--n-per-class", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    cfg = DemoConfig(progress=False, n_per_class=args.n_per_class)
    train, val, test, classes, info = _load_data(cfg)
    print(f"{info['n_train']} train / {info['n_val']} val / {info['n_test']} test images, "
          f"{args.threads} thread(s)", flush=True)
    results = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        rows = {}
        for name in order:
            rows[name] = run(name, train, val, test, classes)
            res = rows[name]
            print(f"round {r} {name:<11} acc {res['test_accuracy']:.4f}  "
                  f"train {res['train_seconds']:6.1f} s  probe epochs {res['probe_epochs']}  "
                  f"format choice {res['format_choice_seconds']:.2f} s  "
                  f"formats {[(c['mode'], c['channels_last'], c['how']) for c in res['memory_format']]}",
                  flush=True)
        if "demo" in rows:
            for name, res in rows.items():
                res["time_ratio_vs_demo"] = res["train_seconds"] / rows["demo"]["train_seconds"]
                res["accuracy_minus_demo"] = res["test_accuracy"] - rows["demo"]["test_accuracy"]
        results.extend(rows.values())
    print(f"\n{'variant':<12}{'test acc':>9}{'train s':>9}{'vs demo':>9}{'acc - demo':>11}")
    for res in results:
        print(f"{res['variant']:<12}{res['test_accuracy']:>9.4f}{res['train_seconds']:>9.1f}"
              f"{res.get('time_ratio_vs_demo', float('nan')):>8.2f}x"
              f"{res.get('accuracy_minus_demo', float('nan')):>+11.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
