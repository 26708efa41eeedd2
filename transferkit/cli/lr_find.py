"""``transferkit lr-find``: the learning-rate range test (``tk.lr_find``) from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_lr_find_parser", "cmd_lr_find"]


def add_lr_find_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``lr-find`` (its data options are the ones ``finetune`` takes)."""
    from ._args import _data_arguments, _positive_float, _positive_int

    p = sub.add_parser("lr-find", parents=[common], help="suggest a learning rate (range test)",
                       description="Smith's learning-rate range test on a copy of a backbone "
                       "with a new head: an exponential lr ramp, the smoothed loss, and the lr "
                       "at its steepest descent, to pass to 'transferkit finetune --lr'.")
    _data_arguments(p)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="DEFAULT", help="'DEFAULT', a tag, a file or 'none'")
    p.add_argument("--head", default="linear")
    p.add_argument("--strategy", default="full", choices=("full", "linear_probe"),
                   help="full: everything trains; linear_probe: the head alone")
    p.add_argument("--start-lr", type=_positive_float, default=1e-7)
    p.add_argument("--end-lr", type=_positive_float, default=10.0)
    p.add_argument("--num-steps", type=_positive_int, default=100)
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--image-size", type=_positive_int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, help="also draw the curve to this image file")
    p.add_argument("--json", dest="json_path", default=None, help="also write the curve here")
    p.add_argument("--no-progress", action="store_true")


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Run the range test and print the suggestion (and write --json / --plot)."""
    from ..load_backbone import load_backbone
    from ..lr_find import lr_find
    from ..replace_head import replace_head
    from ._args import _check_device, _check_output_file, _training_data

    _check_device(args.device)
    for path, flag in ((args.json_path, "--json"), (args.plot, "--plot")):
        if path:
            _check_output_file(path, flag)
    if not args.start_lr < args.end_lr:
        raise ValueError(f"--start-lr ({args.start_lr}) must be below --end-lr ({args.end_lr})")
    train, _, classes, _ = _training_data(args)
    weights = None if args.weights.lower() == "none" else args.weights
    model = replace_head(load_backbone(args.backbone, weights=weights), len(classes),
                         args.head, class_names=classes, seed=args.seed)
    options: dict[str, Any] = {"optimizer": args.optimizer, "batch_size": args.batch_size,
                               "device": args.device, "seed": args.seed,
                               "progress": not args.no_progress}
    if args.image_size is not None:
        options["image_size"] = args.image_size
    result = lr_find(model, train, start_lr=args.start_lr, end_lr=args.end_lr,
                     num_steps=args.num_steps, strategy=args.strategy, **options)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(
            {"suggestion": result.suggestion, "lrs": result.lrs, "losses": result.losses,
             "stopped_early": result.stopped_early}, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        result.plot(args.plot)
    print(f"suggested lr {result.suggestion:.3g} ({len(result.lrs)} steps"
          f"{', stopped at the divergence' if result.stopped_early else ''}); pass it as "
          f"'transferkit finetune --lr {result.suggestion:.3g}'")
    return 0
