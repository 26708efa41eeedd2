"""The ``transferkit`` command line: ``list``, ``finetune``, ``evaluate``, ``predict``, ``demo``.

Run ``transferkit <command> --help`` for the options of each; ``python -m transferkit`` is the
same program. Bad input prints one line, ``transferkit: error: <message>``, on stderr and
exits with status 2 (1 for a failure during training); ``--debug`` shows the traceback instead.
``transferkit finetune`` also runs under ``torchrun`` (only rank 0 prints and writes files).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._tasks import TASKS
from . import ecosystem, openmp
from ._args import (BUILTIN_DATASETS, _builtin, _check_device, _check_output_dir, _check_output_file,
                    _data_arguments, _positive_float, _positive_int, _training_data)
from .lr_find import add_lr_find_parser, cmd_lr_find

__all__ = ["main", "build_parser", "BUILTIN_DATASETS"]

#: Dataset names that ``--data`` accepts besides an image folder.
_PROG = "transferkit"


class _UsageError(Exception):
    """Bad command-line input found by the parser (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (raised, printed by :func:`main`)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# -- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``transferkit`` command (every subcommand)."""
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser = _Parser(prog=_PROG, parents=[common],
                     description="Transfer learning for vision models: load a pretrained "
                     "backbone, replace its head, freeze, fine-tune, evaluate.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", parents=[common], help="list backbones or heads",
                       description="List the registered backbones or heads, one per line.")
    p.add_argument("what", choices=("backbones", "heads"))
    p.add_argument("pattern", nargs="?", default=None,
                   help="shell-style wildcard, e.g. 'resnet*' or 'timm/convnext*'")
    p.add_argument("--details", action="store_true",
                   help="backbones: a table of feature size, input size, and the default "
                   "weights' parameters, ImageNet top-1, multiply-adds, file size and whether "
                   "they load offline")

    p = sub.add_parser("finetune", parents=[common], help="fine-tune a backbone on data",
                       description="Fine-tune a pretrained backbone with a new head; save "
                       "the model, its history and its evaluation to --out.")
    _data_arguments(p)
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="a registered backbone (see 'transferkit list backbones')")
    p.add_argument("--weights", default="DEFAULT",
                   help="'DEFAULT', a pretrained tag, a weights file, or 'none' for random "
                   "initialisation (default: DEFAULT)")
    p.add_argument("--head", default=None,
                   help="a registered head (default: linear; unet for --task segmentation)")
    p.add_argument("--task", default=None,
                   choices=TASKS,
                   help="segmentation: --data is a folder root/images + root/masks, nuclei or "
                   "animal_scenes (default: multiclass)")
    p.add_argument("--loss", default=None,
                   help="segmentation: ce (default), dice or ce+dice")
    p.add_argument("--strategy", default="lp_ft",
                   choices=("lp_ft", "full", "linear_probe", "gradual", "lora"),
                   help="lora: peft low-rank adapters on the frozen backbone, only they and "
                   "the head train (needs pip install 'transferkit[lora]')")
    p.add_argument("--lora-rank", type=_positive_int, default=None,
                   help="--strategy lora: the adapters' rank (default 8)")
    p.add_argument("--lora-alpha", type=_positive_float, default=None,
                   help="--strategy lora: the adapters' scale is alpha / rank (default 2 x rank)")
    p.add_argument("--lora-targets", nargs="+", default=None, metavar="MODULE",
                   help="--strategy lora: backbone module names to adapt (default: every "
                   "Linear and 1x1 convolution)")
    p.add_argument("--lora-dropout", type=float, default=None,
                   help="--strategy lora: dropout on the adapters' input, in [0, 1)")
    p.add_argument("--lora-merge", action="store_true",
                   help="--strategy lora: fold the adapters into the weights at the end (the "
                   "saved model is always merged)")
    p.add_argument("--epochs", type=_positive_int, default=5)
    p.add_argument("--probe-epochs", type=_positive_int, default=5,
                   help="lp_ft: at most this many epochs of linear probe first")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 1e-3 for adamw, 0.01 for sgd)")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="train (and record for evaluation) at this crop size")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                   help="random resized crops and flips while training (default: off, "
                   "finetune's default; --no-augment is accepted)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/finetune",
                   help="output folder: model.safetensors + model.json, history.json, "
                   "eval.json (default: runs/finetune)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--checkpoint-dir", default=None,
                   help="write a checkpoint after every epoch here (Ctrl-C keeps the last one)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in --checkpoint-dir")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="image folders: skip unreadable files (counted) instead of stopping")

    p = sub.add_parser("evaluate", parents=[common], help="evaluate a saved model on data",
                       description="Evaluate a model saved by 'transferkit finetune' or "
                       "transferkit.save() and print its report.")
    p.add_argument("model", help="the saved model: <dir>/model (or either of its two files)")
    _data_arguments(p, evaluate=True)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--json", dest="json_path", default=None, help="also write the report here")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("predict", parents=[common], help="predict the class of image files",
                       description="Print the predicted class of each image file: "
                       "path, class, probability (tab-separated).")
    p.add_argument("model", help="the saved model: <dir>/model (or either of its two files)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--out", default=None,
                   help="segmentation models: write each mask here as a colour-coded palette "
                   "PNG (pixel values = class indices)")
    p.add_argument("--top-k", type=_positive_int, default=1)
    p.add_argument("--device", default=None)

    from .demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser("demo", parents=[common], help="the README's transfer-learning demo",
                       description="EfficientNet-Lite0 pretrained on ImageNet, adapted to "
                       "Animal-MNIST three ways (linear probe, lp_ft, from scratch) on the "
                       "same budget; prints a table and writes report.json, figures and the "
                       "best model. Then 'demo segmentation': the same encoder under a unet "
                       "decoder (lp_ft) against random init on nuclei and animal_scenes, into "
                       "<out>-segmentation/. Offline. The options below are the classification "
                       "demo's; --tiny, --seed, --no-progress and --out apply to both.")
    p.add_argument("which", nargs="?", default=None,
                   choices=("classification", "segmentation", "image2image"),
                   help="run one demo only (default: classification and segmentation; "
                   "image2image runs only when named, into runs/demo-image2image)")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs,
                   help=f"epochs through the backbone (default: {d.epochs})")
    p.add_argument("--probe-epochs", type=_positive_int, default=d.probe_epochs)
    p.add_argument("--image-size", type=_positive_int, default=d.image_size,
                   help=f"crop size in pixels, >= 32 (default: {d.image_size})")
    p.add_argument("--n-per-class", type=_positive_int, default=None,
                   help="training images per class, at most 800 (default: all)")
    p.add_argument("--n-per-class-test", type=_positive_int, default=None,
                   help="test images per class, at most 200 (default: all)")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--lr", type=_positive_float, default=d.lr)
    p.add_argument("--backbone-lr-mult", type=_positive_float, default=d.backbone_lr_mult)
    p.add_argument("--augment", action="store_true",
                   help="random resized crops and flips when the backbone trains")
    p.add_argument("--strategies", default=",".join(d.strategies),
                   help=f"comma-separated subset of {','.join(d.strategies)}")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=str(d.out_dir), help=f"output folder (default: {d.out_dir})")
    p.add_argument("--tiny", action="store_true", help="a seconds-long run (for tests)")
    p.add_argument("--no-progress", action="store_true")
    _rank_arguments(sub, common)
    add_lr_find_parser(sub, common)  # cli/lr_find.py
    ecosystem.add_export_parser(sub, common, _positive_int)
    ecosystem.finish_parser(sub)  # predict --explain; one example per subcommand's --help
    return parser


# -- data -------------------------------------------------------------------------------------
def _eval_data(args: argparse.Namespace) -> Any:
    loader = _builtin(args.data)
    if loader is not None:
        return loader(n_per_class_test=args.n_per_class).test
    if not Path(args.data).is_dir():
        raise FileNotFoundError(
            f"--data {args.data!r} is neither an image folder nor a built-in dataset "
            f"({', '.join(BUILTIN_DATASETS)})."
        )
    return args.data


# -- commands ---------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    from ..backbones import backbone_info, format_backbone_info, list_backbones
    from ..heads import list_heads

    if args.details and args.what != "backbones":
        raise ValueError("--details describes backbones; use 'transferkit list backbones "
                         "--details'")
    names = (list_backbones if args.what == "backbones" else list_heads)(args.pattern)
    if not names:
        raise ValueError(f"no {args.what} match {args.pattern!r}; 'transferkit list "
                         f"{args.what}' lists them all")
    print(format_backbone_info(backbone_info(args.pattern)) if args.details
          else "\n".join(names))
    return 0


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate
    from ..finetune import finetune
    from ..load_backbone import load_backbone
    from ..replace_head import replace_head
    from ..save import save
    from ..training.config import FinetuneConfig

    main = _is_main_process()
    progress = not args.no_progress and main
    options: dict[str, Any] = {
        "epochs": args.epochs, "strategy": args.strategy, "probe_epochs": args.probe_epochs,
        "optimizer": args.optimizer, "batch_size": args.batch_size, "device": args.device,
        "seed": args.seed, "augment": args.augment, "progress": progress,
        "checkpoint_dir": args.checkpoint_dir, "resume": args.resume,
        "skip_bad_images": args.skip_bad_images,
    }
    _check_device(args.device)  # every output and option is checked before training
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir, the folder of the run to continue")
    if main:
        _check_output_dir(args.out, "--out")
        if args.checkpoint_dir:
            _check_output_dir(args.checkpoint_dir, "--checkpoint-dir")
    for key in ("lr", "image_size", "lora_rank", "lora_alpha", "lora_targets", "lora_dropout"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.lora_merge:
        options["lora_merge"] = True
    FinetuneConfig(**options)  # every option checked before any data is read
    if args.task == "segmentation":
        from .segmentation import finetune_segmentation

        return finetune_segmentation(args, options, main)
    if args.task == "image2image":  # --data super_resolution or colorization
        from .image2image import finetune_image2image

        return finetune_image2image(args, options, main)
    if args.task is not None:
        options["task"] = args.task
    if args.loss is not None:
        options["loss"] = args.loss
    args.head = args.head or "linear"
    train, held, classes, held_desc = _training_data(args)
    weights = None if args.weights.lower() == "none" else args.weights
    model = replace_head(load_backbone(args.backbone, weights=weights), len(classes),
                         args.head, class_names=classes)
    openmp.restart_before_training()
    start = time.perf_counter()
    try:
        history = finetune(model, train, held, **options)
    except KeyboardInterrupt:
        last = Path(args.checkpoint_dir or ".") / "last.pt"
        kept = (f"the last finished epoch is in {last}; run the same command with --resume "
                "to continue" if args.checkpoint_dir and last.is_file() else
                "no epoch was saved (--checkpoint-dir keeps each finished epoch)")
        print(f"{_PROG}: interrupted: {kept}", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    report = evaluate(model, held, progress=progress, device=args.device)
    if not main:
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save(model, out / "model")
    (out / "history.json").write_text(json.dumps(history.to_list(), indent=2) + "\n",
                                      encoding="utf-8")
    report.to_json(out / "eval.json")
    print(f"{args.backbone} ({weights or 'random init'}) + {args.head} head, {args.strategy}, "
          f"{len(history)} epochs in {seconds:.0f} s")
    print(f"evaluated on {held_desc}: accuracy {report.accuracy:.4f}, "
          f"macro F1 {report.macro_f1:.4f}")
    print(f"saved {out / 'model.safetensors'}, {out / 'model.json'}, {out / 'history.json'}, "
          f"{out / 'eval.json'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    _check_device(args.device)
    if args.json_path:
        _check_output_file(args.json_path, "--json")
    from ..evaluate import evaluate
    from ..save import load

    model = load(args.model, device=args.device or "cpu")
    if getattr(model, "task", None) == "image2image":
        from .image2image import image2image_data

        data = image2image_data(args, model.data_config.crop_size, evaluate=True).test
    elif getattr(model, "dense", False):
        from .segmentation import eval_segmentation_data

        data = eval_segmentation_data(args, model.data_config.crop_size)
    else:
        data = _eval_data(args)
    report = evaluate(model, data, batch_size=args.batch_size, device=args.device,
                      progress=not args.no_progress)
    if args.json_path:
        report.to_json(args.json_path)
    print(report)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    _check_device(args.device)
    from ..predict import predict
    from ..save import load

    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"No such image file: {missing[0]!r}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    onnx = str(args.model).endswith(".onnx")  # a file from 'transferkit export'
    if onnx and args.explain:
        raise ValueError("--explain needs the PyTorch model (Grad-CAM takes gradients), not "
                         "an .onnx file")
    model = args.model if onnx else load(args.model, device=args.device or "cpu")
    if getattr(model, "task", None) == "image2image":
        from .image2image import print_image_predictions

        return print_image_predictions(model, list(args.images), args.out, args.device)
    if getattr(model, "dense", False):
        from .segmentation import print_mask_predictions

        return print_mask_predictions(model, list(args.images), args.out, args.device)
    if args.out is not None:
        raise ValueError("--out writes masks of a segmentation model; this model classifies")
    for path, pred in zip(args.images, predict(
            model, list(args.images), top_k=args.top_k, device=args.device,
            **({"runtime": "onnxruntime"} if onnx else {}))):
        names = pred.top_class_names or tuple(str(i) for i in pred.top_indices)
        best = "\t".join(f"{n}\t{p:.4f}" for n, p in zip(names, pred.top_probabilities))
        print(f"{path}\t{best}")
    if args.explain:
        ecosystem.write_explanations(model, list(args.images), args.explain)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    runs = []  # every part's options are checked before any part runs
    if args.which in (None, "classification"):
        runs.append(_classification_demo(args))
    if args.which in (None, "segmentation"):
        runs.append(_segmentation_demo(args))
    if args.which == "image2image":
        runs.append(_image2image_demo(args))
    openmp.restart_before_training()
    for run in runs:
        run()
    return 0


def _print_wall_time(result: dict[str, Any], out: str) -> None:
    """The last line of the segmentation and image-to-image demos."""
    print(f"\nWall time {result['wall_seconds']:.0f} s. Files in {out}/: "
          + ", ".join(sorted(Path(p).name for p in result["files"].values())))


def _image2image_demo(args: argparse.Namespace) -> Callable[[], None]:
    from .demo import DemoConfig
    from .demo_image2image import I2IDemoConfig, run_image2image_demo

    out = I2IDemoConfig().out_dir if str(args.out) == str(DemoConfig().out_dir) else args.out
    cfg = I2IDemoConfig(seed=args.seed, out_dir=out, tiny=args.tiny,
                        progress=not args.no_progress)

    def run() -> None:
        result = run_image2image_demo(cfg)
        print(f"\nImage-to-image: a unet decoder on EfficientNet-Lite0, lp_ft "
              f"({cfg.probe_epochs} decoder epochs, then {cfg.epochs} of everything), "
              f"{cfg.n_train} training crops of {cfg.size} px, batch {cfg.batch_size}, AdamW lr "
              f"{cfg.lr:g}; {cfg.n_test} test crops from photo regions no training crop "
              "touches. Perceptual distance: LPIPS-style on frozen ImageNet Lite0 features "
              "(lower is closer).\n")
        print("\n".join(result["table"]))
        _print_wall_time(result, out)
    return run


def _segmentation_demo(args: argparse.Namespace) -> Callable[[], None]:
    from .demo import DemoConfig
    from .demo_segmentation import SegDemoConfig, run_segmentation_demo

    default = SegDemoConfig().out_dir
    out = (f"{args.out}-segmentation" if args.which is None else
           default if str(args.out) == str(DemoConfig().out_dir) else args.out)
    cfg = SegDemoConfig(seed=args.seed, out_dir=out, tiny=args.tiny,
                        progress=not args.no_progress)

    def run() -> None:
        result = run_segmentation_demo(cfg)
        print(f"\nSegmentation: EfficientNet-Lite0 (ImageNet weights) + unet decoder, lp_ft "
              f"({cfg.probe_epochs} decoder epochs on cached encoder maps, then {cfg.epochs} "
              f"of everything), against random init trained {cfg.probe_epochs + cfg.epochs} "
              f"epochs; {cfg.image_size} px, batch {cfg.batch_size}, AdamW lr {cfg.lr:g}. "
              "Test splits:")
        for name, info in result["data"].items():
            print(f"  {name}: {info['description']} ({info['n_train']} / {info['n_test']})")
        print()
        print("\n".join(result["table"]))
        _print_wall_time(result, out)
    return run


def _classification_demo(args: argparse.Namespace) -> Callable[[], None]:
    from .demo import DemoConfig, format_table, run_demo

    config = DemoConfig(
        epochs=args.epochs, probe_epochs=args.probe_epochs, image_size=args.image_size,
        n_per_class=args.n_per_class, n_per_class_test=args.n_per_class_test,
        batch_size=args.batch_size, lr=args.lr, backbone_lr_mult=args.backbone_lr_mult,
        augment=args.augment, seed=args.seed, out_dir=args.out, tiny=args.tiny,
        strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
        progress=not args.no_progress,
    )

    def run() -> None:
        result = run_demo(config)
        d = result.data
        print(f"\nEfficientNet-Lite0 (ImageNet weights) -> Animal-MNIST: {d['n_train']} "
              f"training, {d['n_val']} validation, {d['n_test']} test images; "
              f"{config.image_size} px, {config.epochs} epoch(s) through the backbone, batch "
              f"{config.batch_size}, AdamW lr {config.lr:g}")
        print(f"{d['split'][0].upper()}{d['split'][1:]}.\n")
        print(format_table(result))
        print(f"\n* saved (best validation accuracy). Wall time {result.wall_seconds:.0f} s on "
              f"{result.environment['torch_threads']} CPU thread(s)"
              f"{' + CUDA' if result.environment['device'] == 'cuda' else ''}. "
              f"Files in {config.out_dir}/: " + ", ".join(sorted(
                  Path(p).name for p in result.files.values())))
    return run


def _rank_arguments(sub: Any, common: argparse.ArgumentParser) -> None:
    from ..selection.rank_backbones import METRICS

    p = sub.add_parser("rank", parents=[common], help="rank backbones before fine-tuning",
                       description="Score candidate backbones on the training data with a "
                       "transferability score (one forward pass each, no training) and print "
                       "them best first. See docs/choosing-a-model.md.")
    _data_arguments(p)
    p.add_argument("--candidates", nargs="+", required=True,
                   help="backbone names (default pretrained weights), NAME:WEIGHTS "
                   "(WEIGHTS: 'none' for random init, a tag or a file) or wildcards such as "
                   "'efficientnet_lite*'; space- or comma-separated")
    p.add_argument("--metric", default="logme", choices=METRICS)
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="crop size to score at (use the size you will fine-tune at)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the held-out split of an image folder")
    p.add_argument("--json", dest="json_path", default=None, help="also write the ranking here")
    p.add_argument("--no-progress", action="store_true")


def _cmd_rank(args: argparse.Namespace) -> int:
    _check_device(args.device)
    if args.json_path:
        _check_output_file(args.json_path, "--json")
    from ..selection.rank_backbones import rank_backbones

    train, _, _, _ = _training_data(args)
    candidates: list[Any] = []
    for item in (c.strip() for arg in args.candidates for c in arg.split(",")):
        name, sep, weights = item.partition(":")  # the first colon: C:\ paths survive
        if item:
            candidates.append((name, None if weights.lower() == "none" else weights)
                              if sep else name)
    ranking = rank_backbones(candidates, train, metric=args.metric, image_size=args.image_size,
                             batch_size=args.batch_size, device=args.device,
                             progress=not args.no_progress)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(ranking.to_dict(), indent=2) + "\n",
                                        encoding="utf-8")
    print(ranking)
    return 0


_COMMANDS = {"export": ecosystem.cmd_export,
             "list": _cmd_list, "finetune": _cmd_finetune, "evaluate": _cmd_evaluate,
             "predict": _cmd_predict, "demo": _cmd_demo, "rank": _cmd_rank,
             "lr-find": cmd_lr_find}


# -- entry point ------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``transferkit`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad input, 1 for a failure while running.

    Example:
        >>> from transferkit.cli import main
        >>> main(["list", "heads", "lin*"])
        linear
        0
    """
    if argv is None:  # run as a program (not called from Python)
        argv = sys.argv[1:]
        openmp.run_as_program(argv)  # demo and finetune may restart (cli/openmp.py)
    argv = list(argv)
    debug = "--debug" in argv
    from ..errors import TrainingError, TransferkitError

    try:
        args = build_parser().parse_args(argv)
        return _COMMANDS[args.command](args)
    except _UsageError as exc:
        print(f"{_PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (TrainingError, MemoryError) as exc:
        if debug:
            raise
        print(f"{_PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (TransferkitError, ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        if debug:
            raise
        print(f"{_PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
