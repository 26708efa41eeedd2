"""How the ``pretrained`` section of ``segmentation.py`` chose its animal_scenes budget: the
same training (Lite0 + unet(64), lp_ft against random init, full, for as many epochs) scored on
*validation* scenes, never the test split: ``--nval`` scenes made from the training photos and
Animal-MNIST training silhouettes with ``seed=1`` (the training scenes use ``seed=0``).

Prints, per side, validation mIoU, pixel accuracy, the binary foreground IoU (animal or not)
and the fraction of pixels predicted as an animal.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_validation.py --n 500 --probe 5 --epochs 5
"""

from __future__ import annotations

import argparse
import time

from _common import start

import torch

import transferkit as tk


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
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    start(a)
    train = tk.datasets.animal_scenes(n=a.n, n_test=1, size=a.size, seed=0).train
    val = tk.datasets.animal_scenes(n=a.nval, n_test=1, size=a.size, seed=1).train
    for pre in ([True, False] if a.side == "both" else [a.side == "pre"]):
        bb = tk.load_backbone("efficientnet_lite0", weights="DEFAULT" if pre else None)
        model = tk.replace_head(bb, 11, head="unet", seed=0, decoder_channels=64)
        common = dict(image_size=a.size, batch_size=16, lr=a.lr, seed=0, progress=False,
                      num_workers=0, augment=False, class_weights=a.class_weights)
        if pre:
            opts = dict(common, strategy="lp_ft", epochs=a.epochs, probe_epochs=a.probe,
                        backbone_lr_mult=0.3)
        else:
            opts = dict(common, strategy="full", epochs=a.epochs + a.probe)
        t0 = time.perf_counter()
        history = tk.finetune(model, train, **opts)
        seconds = time.perf_counter() - t0
        r = tk.evaluate(model, val, progress=False, batch_size=32)
        cm = torch.as_tensor(r.confusion_matrix, dtype=torch.float64)
        tp = cm[1:, 1:].sum()
        fg_iou = float(tp / (cm[1:, :].sum() + cm[:, 1:].sum() - tp))
        fg_pred = float(1 - cm[:, 0].sum() / cm.sum())
        losses = [round(x["train_loss"], 3) for x in history.to_list()]
        print(f"{'ImageNet' if pre else 'random'}: size {a.size}, {a.n} scenes, "
              f"{a.probe}+{a.epochs} epochs, class_weights {a.class_weights}: val mIoU "
              f"{r.mean_iou:.4f}, pixel acc {r.pixel_accuracy:.4f}, foreground IoU "
              f"{fg_iou:.3f}, predicted foreground {fg_pred:.3f}, train loss {losses}, "
              f"{seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
