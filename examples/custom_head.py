"""A custom head: register it once, then use it by name like the built-in ones.

The head here is generalised-mean (GeM) pooling followed by a linear layer: GeM averages the
feature map raised to a learnt power p (p = 1 is average pooling, large p approaches max
pooling), which often helps with small objects. It reads the spatial map, so it is registered
with the defaults: a feature cache keeps the map for it (only a head registered with
``pooled=True``, one that average-pools first, gets pooled vectors).

    python examples/custom_head.py          # digits, pretrained EfficientNet-Lite0, ~30 s
    python examples/custom_head.py --tiny   # seconds (for the tests)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

import transferkit as tk
from transferkit.datasets import digits


class GeM(nn.Module):
    """Generalised-mean pooling: ``(mean(x ** p)) ** (1 / p)`` over the map, p learnt."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:  # a backbone that already pools: (N, C)
            return x
        x = x.clamp(min=self.eps).pow(self.p)  # (N, C, H, W)
        return x.mean(dim=(2, 3)).pow(1.0 / self.p)  # (N, C)


@tk.register_head("gem_linear", replace=True)
def gem_linear(in_features: int, num_classes: int, *, p: float = 3.0,
               dropout: float = 0.0) -> nn.Module:
    """GeM pooling, dropout, linear."""
    return nn.Sequential(GeM(p), nn.Dropout(dropout), nn.Linear(in_features, num_classes))


def main(argv: list[str] | None = None) -> tk.EvalReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run")
    args = parser.parse_args(argv)
    n_per_class, n_test, size, epochs = (4, 2, 32, 1) if args.tiny else (None, None, 64, 3)

    print("heads:", tk.list_heads())  # gem_linear is listed beside the built-ins
    train, test, classes = digits(n_per_class=n_per_class, n_per_class_test=n_test)
    backbone = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    model = tk.replace_head(backbone, len(classes), head="gem_linear", p=3.0, dropout=0.1,
                            class_names=list(classes))
    tk.finetune(model, train, epochs=epochs, strategy="linear_probe", image_size=size,
                augment=False, progress=False)
    report = tk.evaluate(model, test, progress=False)
    print(f"digits, GeM head on frozen EfficientNet-Lite0: test accuracy {report.accuracy:.3f}, "
          f"learnt p = {model.head[0].p.item():.2f}")

    # A saved model records the head by name and options; load() rebuilds it from the registry.
    path = Path(tempfile.mkdtemp(prefix="transferkit-gem-")) / "model"
    tk.save(model, path)
    again = tk.load(path)
    x = torch.rand(2, 3, size, size)
    torch.testing.assert_close(model.eval()(x), again(x))  # the same function
    print(f"saved and reloaded: head {again.head_name!r} with options {again.head_options}")
    return report


if __name__ == "__main__":
    main()
