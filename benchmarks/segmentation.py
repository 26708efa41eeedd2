"""Segmentation figures, each measured side by side in one process.

1. ``overhead``: ``finetune(strategy="full", augment=False)`` against a plain PyTorch loop on
   the same model (copies of one initialisation), the same batches (``--samples`` nuclei
   training tiles at stride ``--size // 2``, in order,
   preprocessed once up front for the loop), the same AdamW + cosine schedule and loss
   (cross-entropy, ignore_index 255): the ratio of their times.
2. ``cache``: ``finetune(strategy="linear_probe", augment=False)`` for ``--epochs`` epochs
   with the encoder's maps cached against recomputed every step, for the per-pixel linear
   probe (``dense_linear``) and a ``unet`` decoder.
3. ``pretrained`` (only with ``--only pretrained``: about 50 minutes at 1 thread; run
   seeds or datasets in parallel processes with ``--seeds``, ``--datasets``): the
   segmentation demo's own runs (``transferkit.cli.demo_segmentation``: Lite0 ImageNet + unet
   trained with lp_ft against the same architecture from random init trained in full for as
   many epochs in all), once per ``--seeds`` seed, on both datasets: nuclei's 32
   non-overlapping training tiles (``--nuclei-stride 64``, the dataset's default; the demo
   takes 105 overlapping ones) for ``--nuclei-epochs`` (5 + 5: lp_ft's probe + fine-tuning
   epochs), and ``--scenes`` (1,000) animal_scenes training scenes for ``--scenes-epochs``
   (10 + 10; this budget was chosen on validation scenes, ``segmentation_validation.py``).
   Test mIoU of each side, the gap per seed and its mean over the seeds.

    OMP_NUM_THREADS=1 python benchmarks/segmentation.py --threads 1 --repeats 3
    OMP_NUM_THREADS=1 python benchmarks/segmentation.py --threads 1 --only pretrained
"""

from __future__ import annotations

import copy
import math

from _common import interleaved, print_results, ratio, start, timing_parser

import torch
from torch.nn import functional as F

import transferkit as tk

SCENES = 1000  # pretrained: animal_scenes' training scenes (the demo: 200)
SCENES_SIZE = 64  # pretrained: animal_scenes' side (128 learnt less on validation scenes)


def _model(head: str, size: int, **options) -> tk.TransferModel:
    torch.manual_seed(0)
    bb = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    bb.data_config = bb.data_config.with_image_size(size)
    return tk.replace_head(bb, 2, head=head, seed=0, **options)


def _plain_loop(model, X, masks, *, epochs: int, batch_size: int, lr: float) -> None:
    """What a user writes by hand: AdamW, cosine per step, cross-entropy, no extras."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(X) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(X), batch_size):
            loss = F.cross_entropy(model(X[i:i + batch_size]), masks[i:i + batch_size],
                                   ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def overhead(args) -> dict[str, float]:
    split = tk.datasets.nuclei(tile=args.size, stride=args.size // 2, channels=3)
    X, masks = split.train.data[:args.samples], split.train.targets[:args.samples]
    base = _model("unet", args.size, decoder_channels=64)
    cfg = base.data_config
    Xn = (X - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None]
    opts = dict(strategy="full", epochs=args.epochs, batch_size=16, lr=1e-3, augment=False,
                shuffle=False, progress=False, num_workers=0, channels_last=False)
    times = interleaved({
        "finetune": lambda m: tk.finetune(m, (X, masks), **opts),
        "plain": lambda m: _plain_loop(m, Xn, masks, epochs=args.epochs, batch_size=16,
                                       lr=1e-3),
    }, args.repeats, setup=lambda: copy.deepcopy(base))
    return {"finetune_over_plain_loop": ratio(times, "finetune", "plain"),
            "finetune_s": min(times["finetune"]), "plain_s": min(times["plain"])}


def cache(args) -> dict[str, float]:
    split = tk.datasets.nuclei(tile=args.size, stride=args.size // 2, channels=3)
    data = (split.train.data[:args.samples], split.train.targets[:args.samples])
    out = {}
    for head, options in (("dense_linear", {}), ("unet", {"decoder_channels": 64})):
        base = _model(head, args.size, **options)
        opts = dict(strategy="linear_probe", epochs=args.epochs, batch_size=16, lr=1e-3,
                    augment=False, progress=False, num_workers=0, channels_last=False)
        # untimed: the process's first finetune (imports, allocator) is not charged to a side
        tk.finetune(copy.deepcopy(base), data, cache_features=True, **{**opts, "epochs": 1})
        times = interleaved({
            "cached": lambda m: tk.finetune(m, data, cache_features=True, **opts),
            "uncached": lambda m: tk.finetune(m, data, cache_features=False, **opts),
        }, args.repeats, setup=lambda: copy.deepcopy(base), warmup=0)
        out[f"{head}_cache_speedup"] = ratio(times, "uncached", "cached")
        out[f"{head}_cached_s"] = min(times["cached"])
        out[f"{head}_uncached_s"] = min(times["uncached"])
    return out


def pretrained(args) -> dict[str, float]:
    import statistics
    import tempfile

    from transferkit.cli.demo_segmentation import SegDemoConfig, run_segmentation_demo

    figures: dict[str, float] = {}
    first = True
    for name in args.datasets:
        size = args.size if name == "nuclei" else args.scenes_size
        probe_epochs, ft_epochs = args.nuclei_epochs if name == "nuclei" else args.scenes_epochs
        gaps = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                cfg = SegDemoConfig(epochs=ft_epochs, probe_epochs=probe_epochs,
                                    image_size=size, n_scenes=args.scenes,
                                    n_scenes_test=args.scenes_test,
                                    nuclei_stride=args.nuclei_stride,
                                    class_weights=args.class_weights, loss=args.loss,
                                    datasets=(name,),
                                    seed=seed, out_dir=out, progress=False)
                result = run_segmentation_demo(cfg)
            print(f"seed {seed}, {result['data'][name]['description']}", flush=True)
            print("\n".join(result["table"] if first else result["table"][2:]), flush=True)
            first = False
            runs = {r["strategy"]: r for r in result["results"]}
            tag = f"{name}_seed{seed}"
            figures[f"{tag}_pretrained_miou"] = runs["lp_ft"]["mean_iou"]
            figures[f"{tag}_random_init_miou"] = runs["full"]["mean_iou"]
            gaps.append(runs["lp_ft"]["mean_iou"] - runs["full"]["mean_iou"])
            figures[f"{tag}_miou_gap"] = gaps[-1]
            figures[f"{tag}_wall_s"] = result["wall_seconds"]
        figures[f"{name}_miou_gap_mean"] = statistics.mean(gaps)
        figures[f"{name}_miou_gap_min"] = min(gaps)
        if len(gaps) > 1:
            figures[f"{name}_miou_gap_sd"] = statistics.stdev(gaps)
    return figures


def main() -> None:
    parser = timing_parser(__doc__, repeats=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", choices=("overhead", "cache", "pretrained"), default=None,
                        help="one figure (default: overhead and cache)")
    parser.add_argument("--scenes", type=int, default=SCENES, help="pretrained: training scenes")
    parser.add_argument("--scenes-test", type=int, default=200, help="pretrained: test scenes")
    parser.add_argument("--nuclei-epochs", type=int, nargs=2, default=[5, 5],
                        metavar=("PROBE", "FT"), help="pretrained: nuclei's lp_ft probe and "
                        "fine-tuning epochs (random init trains their sum)")
    parser.add_argument("--scenes-epochs", type=int, nargs=2, default=[10, 10],
                        metavar=("PROBE", "FT"), help="pretrained: the same for animal_scenes")
    parser.add_argument("--scenes-size", type=int, default=SCENES_SIZE,
                        help="pretrained: animal_scenes' side in pixels (nuclei: --size)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="pretrained: training seeds (the gap per seed, its mean and sd)")
    parser.add_argument("--datasets", nargs="+", default=["nuclei", "animal_scenes"],
                        choices=("nuclei", "animal_scenes"), help="pretrained: which datasets")
    parser.add_argument("--nuclei-stride", type=int, default=64,
                        help="pretrained: step of nuclei's training tiles (64: 32 tiles, "
                             "32: 105 overlapping tiles, the demo's)")
    parser.add_argument("--loss", default="ce", choices=("ce", "dice", "ce+dice"),
                        help="pretrained: finetune's segmentation loss")
    parser.add_argument("--class-weights", default="none", choices=("balanced", "none"),
                        help="pretrained: finetune's class_weights (mIoU averages the classes)")
    parser.set_defaults(samples=64, size=64)
    args = parser.parse_args()
    start(args)
    results = {}
    if args.only in (None, "cache"):
        results.update(cache(args))
    if args.only in (None, "overhead"):
        results.update(overhead(args))
    args.class_weights = None if args.class_weights == "none" else args.class_weights
    if args.only == "pretrained":
        results.update(pretrained(args))
    print_results(results)


if __name__ == "__main__":
    main()
