"""transferkit against fastai, PyTorch Lightning and a plain PyTorch loop on the demo's task.

EfficientNet-Lite0 (ImageNet, the pip package's weights) -> Animal-MNIST at 64 px, the demo's
split (7,200 training, 800 validation, 2,000 test images). Every contender starts from the same
objects: a deep copy of one loaded lite0 backbone and of one seeded linear head
(``replace_head(..., seed=0)``), checked equal before each run. The peers receive the images
preprocessed once by transferkit's own evaluation preprocessing (resize 28 -> 64, grey -> RGB,
the weights' mean/std), checked against what ``transferkit.evaluate`` feeds the model;
transferkit gets the raw images and applies its defaults (no augmentation, as for the peers).

Contenders (1 intra-op thread each, run in turns; the order rotates between rounds):

- ``tk_lp_ft``: ``finetune(model, train, val, strategy="lp_ft", epochs=3, image_size=64)``,
  every other option at its default (the README's quickstart call plus validation data);
- ``tk_linear_probe``: the same with ``strategy="linear_probe"``;
- ``fastai``: ``Learner(...).fine_tune(3)``: its standard recipe (1 frozen epoch, then 3
  unfrozen with discriminative learning rates, Adam, base_lr 2e-3, one-cycle), without
  ``lr_find`` and without fastai's augmentation (the same tensors as the others);
- ``lightning``: ``BackboneFinetuning(unfreeze_backbone_at_epoch=1)`` (its defaults otherwise:
  backbone at 0.1x, lr x1.5 per epoch), Adam 1e-3, 4 epochs;
- ``plain`` / ``plain_cl``: a hand-written loop, 1 epoch of linear probe (backbone frozen in eval
  mode) then 3 epochs of everything (AdamW 1e-3, backbone 0.1x, cosine, BatchNorm statistics
  kept), contiguous / channels-last.

Every contender validates on the 800 images after each epoch; the test accuracy is computed the
same way for all (one forward over the preprocessed test tensors). Printed: test accuracy,
training seconds, and the time ratio against ``tk_lp_ft`` of the same round.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers.py                  # ~30 min, 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers.py --n-per-class 40 # a quick look

Needs the ``peers`` extra: ``pip install "transferkit[peers]"`` (fastai, pytorch-lightning).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.cli.demo import DemoConfig, _load_data  # noqa: E402
from transferkit.data.preprocess import BatchPrep  # noqa: E402

BATCH = 64
NAMES = ("tk_lp_ft", "tk_linear_probe", "fastai", "lightning", "plain", "plain_cl")


# -- the shared starting point ----------------------------------------------------------------
class Body(nn.Module):
    """The backbone's feature extractor as a plain module (what every peer trains)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.forward_features(x)


def tensors(subset):
    data = subset.dataset if hasattr(subset, "indices") else subset
    idx = torch.as_tensor(list(subset.indices)) if hasattr(subset, "indices") else None
    X, y = data.data, torch.as_tensor(data.targets)
    return (X[idx], y[idx]) if idx is not None else (X, y)


class Start:
    """One loaded backbone and one seeded head; each run gets deep copies of both."""

    def __init__(self, n_classes: int, classes) -> None:
        self.backbone = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
        self.head = tk.replace_head(self.backbone, n_classes, seed=0).head
        self.classes = classes
        self.state = {k: v.clone() for k, v in self._model().state_dict().items()}

    def _model(self):
        return tk.replace_head(self.backbone, len(self.classes), class_names=self.classes,
                               seed=0)

    def tk_model(self) -> tk.TransferModel:
        model = tk.TransferModel(copy.deepcopy(self.backbone), copy.deepcopy(self.head),
                                 len(self.classes), head_name="linear",
                                 class_names=list(self.classes))
        self.check(model.state_dict())
        return model

    def plain_model(self) -> nn.Sequential:
        model = nn.Sequential(Body(copy.deepcopy(self.backbone)), copy.deepcopy(self.head))
        sd = {("backbone." + k[len("0.backbone."):]) if k.startswith("0.") else
              ("head." + k[len("1."):]): v for k, v in model.state_dict().items()}
        self.check(sd)
        return model

    def check(self, sd) -> None:
        assert sd.keys() == self.state.keys(), "a contender's model differs in its tensors"
        bad = [k for k, v in sd.items() if not torch.equal(v, self.state[k])]
        assert not bad, f"a contender starts from other weights: {bad[:3]}"


def accuracy(model: nn.Module, X, y) -> float:
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(X[i:i + 256]).argmax(1) for i in range(0, len(X), 256)])
    return float((pred == y).float().mean())


# -- the contenders ---------------------------------------------------------------------------
def run_tk(start: Start, data, strategy: str):
    model = start.tk_model()
    t0 = time.perf_counter()
    tk.finetune(model, data["train_raw"], data["val_raw"], strategy=strategy, epochs=3,
                image_size=64, progress=False)
    return model, time.perf_counter() - t0


def run_fastai(start: Start, data):
    from fastai.callback.schedule import fine_tune  # noqa: F401  (patches Learner.fine_tune)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.metrics import accuracy as fa_accuracy
    from fastai.torch_core import params
    from torch.utils.data import TensorDataset

    model = start.plain_model()
    dls = DataLoaders(DataLoader(TensorDataset(*data["train"]), bs=BATCH, shuffle=True,
                                 drop_last=True),
                      DataLoader(TensorDataset(*data["val"]), bs=BATCH * 2),
                      device=torch.device("cpu"))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=fa_accuracy,
                    splitter=lambda m: [params(m[0]), params(m[1])])
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(3)
    return model, time.perf_counter() - t0


def run_lightning(start: Start, data):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import BackboneFinetuning
    from torch.utils.data import DataLoader, TensorDataset

    class Lit(pl.LightningModule):
        def __init__(self, body, head):
            super().__init__()
            self.backbone, self.head = body, head

        def forward(self, x):
            return self.head(self.backbone(x))

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()),
                                    lr=1e-3)

    plain = start.plain_model()
    lit = Lit(plain[0], plain[1])
    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(*data["train"]), batch_size=BATCH, shuffle=True,
                       generator=g)
    val = DataLoader(TensorDataset(*data["val"]), batch_size=BATCH * 2)
    trainer = pl.Trainer(max_epochs=4, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[BackboneFinetuning(unfreeze_backbone_at_epoch=1)])
    t0 = time.perf_counter()
    trainer.fit(lit, train, val)
    return plain, time.perf_counter() - t0


def run_plain(start: Start, data, channels_last: bool):
    model = start.plain_model()
    body, head = model[0], model[1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    X, y = data["train"]
    Xv, yv = data["val"]
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()

    def epoch(opt, sched, train_body):
        body.train(train_body)
        if train_body:  # BatchNorm keeps the statistics the probe saw (as transferkit's lp_ft)
            for m in body.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        head.train()
        for idx in torch.randperm(len(X), generator=g).split(BATCH):
            xb = X[idx].contiguous(memory_format=fmt)
            if train_body:
                loss = F.cross_entropy(model(xb), y[idx])
            else:
                with torch.no_grad():
                    f = body(xb)
                loss = F.cross_entropy(head(f), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        accuracy(model, Xv.contiguous(memory_format=fmt), yv)  # validation, as the others

    for p in body.parameters():
        p.requires_grad_(False)
    body.eval()
    epoch(torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01), None, False)
    for p in body.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": head.parameters(), "lr": 1e-3},
                             {"params": body.parameters(), "lr": 1e-4}], weight_decay=0.01)
    steps = 3 * math.ceil(len(X) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(3):
        epoch(opt, sched, True)
    return model, time.perf_counter() - t0


# -- the benchmark ----------------------------------------------------------------------------
def prepare(n_per_class, n_per_class_test=None):
    cfg = DemoConfig(progress=False, n_per_class=n_per_class, n_per_class_test=n_per_class_test)
    train, val, test, classes, info = _load_data(cfg)
    probe = tk.load_backbone("efficientnet_lite0", weights=None)
    config = probe.data_config.with_image_size(64)
    prep = BatchPrep(config, train=False)
    data = {"train_raw": train, "val_raw": val, "classes": classes, "info": info}
    for name, split in (("train", train), ("val", val), ("test", test)):
        X, y = tensors(split)
        data[name] = (torch.cat([prep(X[i:i + 512]) for i in range(0, len(X), 512)]), y)
        data[name + "_raw_tensors"] = (X, y)
    return data


def check_preprocessing(start: Start, data) -> float:
    """transferkit.evaluate on the raw test images == a forward over the peers' tensors."""
    model = start.tk_model()
    Xt, yt = data["test"]
    report = tk.evaluate(model, data["test_raw_tensors"], progress=False, batch_size=256)
    mine = accuracy(model, Xt, yt)
    model.eval()
    with torch.inference_mode():
        raw = data["test_raw_tensors"][0]
        prep = BatchPrep(model.backbone.data_config.with_image_size(64), train=False)
        diff = max(float((prep(raw[i:i + 256]) - Xt[i:i + 256]).abs().max())
                   for i in range(0, len(raw), 256))
    assert diff < 1e-5, f"the peers' inputs differ from transferkit's by {diff}"
    print(f"untrained model: evaluate() accuracy {report.accuracy:.4f}, forward over the "
          f"peers' tensors {mine:.4f}")
    return diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--n-per-class", type=int, default=None)
    ap.add_argument("--n-per-class-test", type=int, default=None)
    ap.add_argument("--only", default=",".join(NAMES))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    data = prepare(args.n_per_class, args.n_per_class_test)
    start = Start(len(data["classes"]), list(data["classes"]))
    diff = check_preprocessing(start, data)
    info = data["info"]
    print(f"{info['n_train']} train / {info['n_val']} val / {info['n_test']} test images; "
          f"same weights checked; preprocessing checked (max input diff {diff:.1e}); "
          f"torch threads {torch.get_num_threads()}", flush=True)
    runners = {
        "tk_lp_ft": lambda: run_tk(start, data, "lp_ft"),
        "tk_linear_probe": lambda: run_tk(start, data, "linear_probe"),
        "fastai": lambda: run_fastai(start, data),
        "lightning": lambda: run_lightning(start, data),
        "plain": lambda: run_plain(start, data, False),
        "plain_cl": lambda: run_plain(start, data, True),
    }
    names = args.only.split(",")
    results = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        rows = {}
        for name in order:
            torch.manual_seed(0)
            model, seconds = runners[name]()
            acc = accuracy(model, *data["test"])  # the same forward for every contender
            rows[name] = {"name": name, "round": r, "test_accuracy": float(acc),
                          "train_seconds": seconds}
            print(f"round {r} {name:<16} test acc {acc:.4f}  train {seconds:7.1f} s",
                  flush=True)
        for row in rows.values():
            if "tk_lp_ft" in rows:
                row["time_vs_tk_lp_ft"] = row["train_seconds"] / rows["tk_lp_ft"]["train_seconds"]
        results.extend(rows.values())
    print(f"\n{'contender':<17}{'test acc':>9}{'train s':>9}{'time / tk_lp_ft':>17}")
    for row in results:
        print(f"{row['name']:<17}{row['test_accuracy']:>9.4f}{row['train_seconds']:>9.1f}"
              f"{row.get('time_vs_tk_lp_ft', float('nan')):>16.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
