"""How the ``pretrained`` section of ``segmentation.py`` chose its animal_scenes budget: the
segmentation demo's own training (``transferkit.cli.demo_segmentation.train_one``: Lite0 +
unet(64), lp_ft against random init, full, for as many epochs) scored on
*validation* scenes, never the test split: ``--nval`` scenes made from the training photos and
Animal-MNIST training silhouettes with ``seed=1`` (the training scenes use ``seed=0``).

Prints, per side, validation mIoU, pixel accuracy, the binary foreground IoU (animal or not)
the fraction of pixels predicted as an animal and each animal class's IoU. The scenes'
options (``--max-animals``, ``--scale``, ``--texture-scale``, ``--contrast``) default to
``animal_scenes``'s own.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_validation.py --n 500 --probe 5 --epochs 5
"""

from __future__ import annotations

import argparse

from _common import start

import torch

import transferkit as tk
from transferkit.cli.demo_segmentation import SegDemoConfig, train_one


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=200, help="training scenes")
    p.add_argument("--nval", type=int, default=100, help="validation scenes")
    p.add_argument("--probe", type=int, default=3, help="lp_ft's probe epochs")
    p.add_argument("--epochs", type=int, default=3, help="lp_ft's fine-tuning epochs")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--side", choices=("both", "pre", "random"), default="both")
    p.add_argument("--class-weights", default=None, choices=(None, "balanced"))
    p.add_argument("--loss", default="ce", choices=("ce", "dice", "ce+dice"))
    p.add_argument("--decoder-channels", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--backbone-lr-mult", type=float, default=0.3, help="lp_ft's fine-tuning")
    p.add_argument("--seed", type=int, default=0, help="training seed (model init, batches)")
    p.add_argument("--max-animals", type=int, default=None, help="animal_scenes' max_animals")
    p.add_argument("--scale", type=float, nargs=2, default=None, help="animal_scenes' scale")
    p.add_argument("--texture-scale", type=float, nargs=2, default=None,
                   help="animal_scenes' texture_scale")
    p.add_argument("--contrast", type=float, default=None, help="animal_scenes' contrast")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    start(a)
    scene_opts = {k: v for k, v in (("max_animals", a.max_animals), ("scale", a.scale),
                                    ("texture_scale", a.texture_scale),
                                    ("contrast", a.contrast)) if v is not None}
    print(f"animal_scenes options: {scene_opts or 'defaults'}", flush=True)
    train = tk.datasets.animal_scenes(n=a.n, n_test=1, size=a.size, seed=0, **scene_opts).train
    val = tk.datasets.animal_scenes(n=a.nval, n_test=1, size=a.size, seed=1, **scene_opts).train
    cfg = SegDemoConfig(epochs=a.epochs, probe_epochs=a.probe, image_size=a.size,
                        decoder_channels=a.decoder_channels, batch_size=a.batch_size, lr=a.lr,
                        backbone_lr_mult=a.backbone_lr_mult, class_weights=a.class_weights,
                        loss=a.loss, datasets=("animal_scenes",), seed=a.seed, progress=False)
    classes = list(tk.datasets.ANIMAL_SCENES_CLASSES)
    for pre in ([True, False] if a.side == "both" else [a.side == "pre"]):
        # the segmentation demo's own training of one side, scored on the validation scenes
        run, _, r = train_one("animal_scenes", pre, cfg, train, val, classes, lambda _: None)
        cm = torch.as_tensor(r.confusion_matrix, dtype=torch.float64)
        tp = cm[1:, 1:].sum()
        fg_iou = float(tp / (cm[1:, :].sum() + cm[:, 1:].sum() - tp))
        fg_pred = float(1 - cm[:, 0].sum() / cm.sum())
        animals_iou = ", ".join(f"{c} {v:.2f}" if v is not None else f"{c} -"
                                for c, v in list(r.iou.items())[1:])
        losses = [round(x["train_loss"], 3) for x in run.history]
        print(f"{'ImageNet' if pre else 'random'}: size {a.size}, {a.n} scenes, "
              f"{a.probe}+{a.epochs} epochs, batch {a.batch_size}, lr {a.lr:g}, class_weights "
              f"{a.class_weights}, loss {a.loss}: val mIoU "
              f"{r.mean_iou:.4f}, pixel acc {r.pixel_accuracy:.4f}, foreground IoU "
              f"{fg_iou:.3f}, predicted foreground {fg_pred:.3f}, train loss {losses}, "
              f"{run.train_seconds:.0f} s\n  per-class IoU: {animals_iou}", flush=True)

if __name__ == "__main__":
    main()
