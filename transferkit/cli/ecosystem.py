"""The ``export`` subcommand, ``predict --explain``, and one example in every subcommand's
``--help`` (kept here so that :mod:`.main` only wires them in)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["EXAMPLES", "add_export_parser", "cmd_export", "finish_parser", "write_explanations"]

#: One example per subcommand, shown at the end of its ``--help``.
EXAMPLES = {
    "list": "transferkit list backbones 'efficientnet_lite*' --details",
    "finetune": "transferkit finetune --data animal_mnist --backbone efficientnet_lite0 "
                "--epochs 3 --image-size 64 --out runs/animals",
    "evaluate": "transferkit evaluate runs/animals/model --data animal_mnist --json eval.json",
    "predict": "transferkit predict runs/animals/model cat.jpg dog.png --top-k 3 "
               "--explain runs/animals/gradcam",
    "demo": "transferkit demo --tiny",
    "rank": "transferkit rank --data animal_mnist --candidates resnet18 efficientnet_lite0 "
            "--image-size 64",
    "export": "transferkit export runs/animals/model runs/animals/model.onnx --image-size 64",
    "lr-find": "transferkit lr-find --data animal_mnist --image-size 64 --strategy linear_probe "
               "--plot lr_find.png",
}


def add_export_parser(sub: Any, common: argparse.ArgumentParser, positive_int: Any) -> None:
    p = sub.add_parser("export", parents=[common], help="export a saved model (ONNX, ...)",
                       description="Export a saved model to ONNX (served by onnxruntime), "
                       "TorchScript or a torch.export ExportedProgram; the file is run once "
                       "and compared with PyTorch before it is kept. Metadata (input size, "
                       "mean/std, class names, task) goes inside it and into <out>.json.")
    p.add_argument("model", help="the saved model: <dir>/model (or either of its two files)")
    p.add_argument("out", help="the file to write, e.g. model.onnx")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript",
                                                        "exported_program"))
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="input size of the exported file (default: the model's)")
    p.add_argument("--fixed-batch", action="store_true",
                   help="batch size 1 only (default: any batch size)")
    p.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (>= 18)")


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export
    from ..save import load

    model = load(args.model, device="cpu")
    result = export(model, args.out, args.format, image_size=args.image_size,
                    dynamic_batch=not args.fixed_batch, opset=args.opset)
    print(f"wrote {result.path} ({result.format}) and {result.metadata_path}; max |exported - "
          f"torch| = {result.max_abs_diff:.2g} at batch sizes "
          f"{', '.join(map(str, result.checked_batch_sizes))}")
    return 0


def finish_parser(sub: Any) -> None:
    """``predict --explain`` and the examples: run once every subcommand is added."""
    predict = sub.choices.get("predict")
    if predict is not None:
        predict.add_argument("--explain", metavar="DIR", default=None,
                             help="also write a Grad-CAM overlay per image to DIR "
                             "(<image name>.gradcam.png)")
    for name, parser in sub.choices.items():
        if name in EXAMPLES:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            parser.epilog = f"example:\n  {EXAMPLES[name]}"


def write_explanations(model: Any, images: list[str], out_dir: str) -> list[Path]:
    """One Grad-CAM overlay PNG per image file in ``out_dir``."""
    import numpy as np
    from PIL import Image

    from ..explain import explain

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    e = explain(model, list(images))
    written = []
    for path, overlay, target in zip(images, e.overlays, e.targets):
        name = model.class_names[target] if getattr(model, "class_names", None) else target
        out = folder / f"{Path(path).stem}.gradcam.png"
        Image.fromarray((np.clip(overlay, 0, 1) * 255).astype(np.uint8)).save(out)
        written.append(out)
        print(f"{path}\tgradcam\t{name}\t{out}")
    return written
