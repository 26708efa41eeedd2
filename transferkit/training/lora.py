"""``strategy="lora"``: low-rank adapters on a frozen backbone, through Hugging Face ``peft``.

``peft.inject_adapter_in_model`` adds LoRA layers (``W x + (alpha / r) * B A x``, ``B`` starting
at zero) in place of the target modules of the backbone; the base weights and BatchNorm
statistics stay frozen and bit-identical, only the adapters and the head train. Targets
(``lora_targets=None``): every ``nn.Linear`` of the backbone (a timm ViT's fused ``attn.qkv``
Linear included, which is the target peft#691 asks for), and for CNNs every 1x1 convolution
with one group (the pointwise convolutions of MobileNet/EfficientNet blocks, a
ResNet's bottleneck and downsample convolutions). A torchvision ViT's attention is an
``nn.MultiheadAttention``, whose fused ``in_proj_weight`` is no Linear and whose ``out_proj`` its
functional forward reads directly (a LoRA Linear there would never run); peft's
MultiheadAttention layer merges and unmerges the adapter into the base weight on every forward,
which moved the base weights by float rounding in our test, so it is refused: LoRA on a
torchvision ViT adapts its MLP Linears. Give ``lora_targets`` as module names (full,
or suffixes that peft matches) to choose others.

:func:`merge_lora` folds the adapters into their base layers (``W + (alpha / r) B A``) and
replaces each LoRA layer by a plain layer: a plain model whose outputs equal the adapted one's
to float32 rounding. ``finetune(..., strategy="lora", lora_merge=True)`` merges at the end;
:func:`transferkit.save` always writes the merged weights (so a saved model loads as a plain
model, without peft).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["check_lora", "add_lora", "merge_lora", "has_lora", "default_targets",
           "LORA_KEY"]

LORA_KEY = "lora_"  # parameter names of the adapters contain it


def _peft():
    try:
        import peft
    except ImportError:
        raise ImportError(
            "strategy='lora' needs Hugging Face peft: pip install 'transferkit[lora]' "
            "(or pip install peft)."
        ) from None
    return peft


def default_targets(backbone: nn.Module) -> list[str]:
    """The module names LoRA targets by default (see the module docstring)."""
    mha_children = {f"{n}.out_proj" for n, m in backbone.named_modules()
                    if isinstance(m, nn.MultiheadAttention)}
    names = []
    for n, m in backbone.named_modules():
        if isinstance(m, nn.Linear) and n not in mha_children:
            names.append(n)
        elif (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1):
            names.append(n)
    return names


def check_lora_options(cfg: Any) -> None:
    """The LoRA options on their own (no model needed): :class:`FinetuneConfig` calls it, so a
    LoRA option with another strategy, or a bad value, fails where every option is checked."""
    lora_opts = {"lora_rank": cfg.lora_rank, "lora_alpha": cfg.lora_alpha,
                 "lora_targets": cfg.lora_targets, "lora_dropout": cfg.lora_dropout,
                 "lora_merge": cfg.lora_merge}
    if cfg.strategy != "lora":
        given = [k for k, v in lora_opts.items() if v not in (None, False)]
        if given:
            raise ValueError(f"finetune: {given} apply to strategy='lora' only, not "
                             f"{cfg.strategy!r}.")
        return
    for name in ("lora_rank",):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"finetune: {name} must be an int >= 1 (8 is usual), got {v!r}.")
    v = cfg.lora_alpha
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
        raise ValueError(f"finetune: lora_alpha must be a number > 0 (the adapters' scale is "
                         f"lora_alpha / lora_rank), got {v!r}.")
    v = cfg.lora_dropout
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                          or not 0 <= v < 1):
        raise ValueError(f"finetune: lora_dropout must be in [0, 1), got {v!r}.")


def check_lora(model: Any, cfg: Any) -> list[str] | None:
    """The LoRA targets against ``model``, before any work (``cfg`` is a
    :class:`FinetuneConfig`, whose construction checked the options on their own); returns the
    target names."""
    if cfg.strategy != "lora":
        return None
    if has_lora(model):
        raise ValueError("finetune: the model already has LoRA adapters; merge them "
                         "(transferkit.training.lora.merge_lora) or start from a fresh model.")
    backbone = model.backbone
    names = dict(backbone.named_modules())
    if cfg.lora_targets is None:
        targets = default_targets(backbone)
        if not targets:
            raise ValueError(f"finetune: strategy='lora' found no Linear or 1x1 convolution in {backbone.name!r}; pass lora_targets=[...] "
                             "(module names of its backbone).")
    else:
        if isinstance(cfg.lora_targets, str) or not isinstance(cfg.lora_targets, Sequence):
            raise TypeError(f"finetune: lora_targets must be a list of module names, got "
                            f"{cfg.lora_targets!r}.")
        targets = list(cfg.lora_targets)
        for t in targets:
            hits = [n for n in names if n == t or n.endswith("." + t)]
            if not hits:
                close = sorted(n for n in names if t.split(".")[-1] in n)[:3]
                raise ValueError(f"finetune: lora_targets names {t!r}, which is no module of "
                                 f"the backbone {backbone.name!r}" + (
                                     f"; close: {close}" if close else "") + ".")
            bad = [n for n in hits if not isinstance(names[n], (nn.Linear, nn.Conv2d))
                   or isinstance(names[n], nn.modules.linear.NonDynamicallyQuantizableLinear)]
            if bad:
                raise ValueError(f"finetune: lora_targets {t!r} matches {bad[0]!r}, a "
                                 f"{type(names[bad[0]]).__name__}; LoRA targets Linear and "
                                 "Conv2d modules (not a MultiheadAttention or its out_proj: "
                                 "see transferkit.training.lora).")
    _peft()
    return targets


def add_lora(model: Any, cfg: Any, targets: list[str]) -> None:
    """Inject the adapters into ``model.backbone`` (after every check has passed)."""
    peft = _peft()
    rank = cfg.lora_rank or 8
    config = peft.LoraConfig(r=rank, lora_alpha=cfg.lora_alpha or 2 * rank,
                             lora_dropout=cfg.lora_dropout or 0.0, target_modules=targets)
    peft.inject_adapter_in_model(config, model.backbone)


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` holds peft LoRA layers."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return False
    return any(isinstance(m, LoraLayer) for m in model.modules())


def merge_lora(model: nn.Module, *, copy_model: bool = False) -> nn.Module:
    """Fold every LoRA adapter into its base layer and put the plain layer back.

    Args:
        model: a model with peft LoRA layers (others are returned as they are).
        copy_model: merge a deep copy and leave ``model`` as it is.

    Returns:
        The merged model (``model`` itself unless ``copy_model``): plain torch layers, the
        outputs of the adapted model to float32 rounding.
    """
    if not has_lora(model):
        return model
    from peft.tuners.lora import LoraLayer

    if copy_model:
        model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            base = module.get_base_layer()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, base)
    return model
