"""Weight averaging for ``finetune``: EMA (``ema=0.999``) and SWA (``swa=True``).

Both are callbacks built on ``torch.optim.swa_utils.AveragedModel``; ``finetune`` adds them
in front of the user's callbacks when the options are on, and at the end of training the
averaged weights replace the model's, so that what ``finetune`` returns, ``evaluate`` scores
and ``save`` writes is the averaged model. ``History.averaged`` holds its validation figures
(the per-epoch records are those of the raw weights).

EMA follows timm's ``ModelEmaV3`` driven by the optimizer-step count: the first step copies the
weights, each later step ``k`` (``k >= 2``) does ``ema = d * ema + (1 - d) * w`` over every
float parameter and buffer (BatchNorm statistics included; integer buffers are copied), with
``d = decay``, or with ``ema_warmup=True`` ``d = min(decay, 1 - (1 + (k - 1)) ** (-2/3))``
(timm's ``use_warmup``, ``warmup_gamma=1``, ``warmup_power=2/3``).

SWA averages the weights at the end of the final phase's last ``swa`` epochs (``True``: the
second half of them) with equal weights, then recomputes the statistics of the BatchNorm layers
that trained in batch-statistics mode (``torch.optim.swa_utils.update_bn`` over the training
data, evaluation preprocessing); frozen BatchNorm layers keep their statistics.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, update_bn

from .callbacks import Callback

__all__ = ["EMA", "SWA", "averaging_callbacks", "ema_decay", "check_averaging"]

_WARMUP_POWER = 2 / 3  # timm ModelEmaV3's warmup_power (warmup_gamma = 1)


def ema_decay(decay: float, k: int, warmup: bool) -> float:
    """The EMA decay at optimizer step ``k`` (1-based): 0 at the first step (a copy)."""
    if k <= 1:
        return 0.0
    if not warmup:
        return decay
    return max(min(decay, 1 - (1 + (k - 1)) ** -_WARMUP_POWER), 0.0)


def check_averaging(cfg: Any) -> None:
    """The EMA/SWA options of a :class:`FinetuneConfig`, checked before any work."""
    ema, swa = cfg.ema, cfg.swa
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float))
                            or not math.isfinite(ema) or not 0 < ema < 1):
        raise ValueError(f"finetune: ema must be None or a decay in (0, 1) such as 0.999 (the "
                         f"weight of the running average at each optimizer step), got {ema!r}.")
    if not isinstance(cfg.ema_warmup, bool):
        raise TypeError(f"finetune: ema_warmup must be True or False, got {cfg.ema_warmup!r}.")
    if cfg.ema_warmup and ema is None:
        raise ValueError("finetune: ema_warmup=True needs ema=<decay>, e.g. ema=0.999.")
    if not isinstance(swa, bool) and (not isinstance(swa, int) or swa < 1):
        raise ValueError(f"finetune: swa must be False, True (average the second half of the "
                         f"final phase's epochs) or an int >= 1 (its last swa epochs), got "
                         f"{swa!r}.")
    if ema is not None and swa is not False:
        raise ValueError("finetune: ema and swa both replace the final weights; choose one.")
    if (ema is not None or swa is not False) and (cfg.early_stopping is not None or cfg.resume):
        which = "early_stopping" if cfg.early_stopping is not None else "resume"
        raise ValueError(f"finetune: ema/swa cannot be combined with {which} here (the averaged "
                         "weights are neither the best epoch's nor kept in checkpoints).")


def _ema_fn(decay: float, warmup: bool):
    def avg(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        if not averaged.is_floating_point():
            return current  # integer buffers (num_batches_tracked): copied, as timm does
        d = ema_decay(decay, int(num_averaged) + 1, warmup)
        return averaged.lerp(current, 1 - d)
    return avg


def _finish(trainer: Any, averaged: AveragedModel, method: str) -> None:
    model = trainer.model
    model.load_state_dict(averaged.module.state_dict())
    trainer.history.averaged = {"method": method, "steps": int(averaged.n_averaged),
                                **trainer._validate()}


class EMA(Callback):
    """Exponential moving average of the weights over optimizer steps (see module doc)."""

    def __init__(self, decay: float, warmup: bool = False) -> None:
        self.decay, self.warmup = float(decay), bool(warmup)
        self.averaged: AveragedModel | None = None

    def on_train_start(self, trainer: Any) -> None:
        self.averaged = AveragedModel(trainer.model, avg_fn=_ema_fn(self.decay, self.warmup),
                                      use_buffers=True)

    def on_step_end(self, trainer: Any) -> None:
        self.averaged.update_parameters(trainer.model)

    def on_train_end(self, trainer: Any, history: Any) -> None:
        if self.averaged is not None and int(self.averaged.n_averaged) > 0:
            _finish(trainer, self.averaged, "ema")


class SWA(Callback):
    """Stochastic weight averaging of the final phase's last epochs (see module doc)."""

    def __init__(self, epochs: bool | int = True) -> None:
        self.epochs = epochs
        self.averaged: AveragedModel | None = None
        self._seen = 0
        self._bn_train: dict[str, bool] = {}

    def _last(self, trainer: Any) -> Any:
        return trainer.phases[-1]

    def on_train_start(self, trainer: Any) -> None:
        self.averaged = AveragedModel(trainer.model)

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        if batch == 0:  # the BatchNorm modes as this epoch trains them
            self._bn_train = {n: m.training for n, m in trainer.model.named_modules()
                              if isinstance(m, nn.modules.batchnorm._BatchNorm)}

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        last = self._last(trainer)
        if record["phase"] != last.name:
            return
        self._seen += 1
        n = math.ceil(last.epochs / 2) if self.epochs is True else int(self.epochs)
        if self._seen > last.epochs - n:
            self.averaged.update_parameters(trainer.model)

    def on_train_end(self, trainer: Any, history: Any) -> None:
        if self.averaged is None:
            return
        if int(self.averaged.n_averaged) == 0:  # the phase ended early: its final weights
            self.averaged.update_parameters(trainer.model)
        model = trainer.model
        model.load_state_dict(self.averaged.module.state_dict())  # buffers: the last epoch's
        if any(self._bn_train.values()):
            self._update_bn(trainer)
        trainer.history.averaged = {"method": "swa", "epochs": int(self.averaged.n_averaged),
                                    **trainer._validate()}

    def _update_bn(self, trainer: Any) -> None:
        model = trainer.model
        frozen = {n: {k: v.clone() for k, v in m.state_dict().items()}
                  for n, m in model.named_modules() if n in self._bn_train
                  and not self._bn_train[n]}
        modes = [(m, m.training) for m in model.modules()]
        src = trainer.train_source
        order = src.indices(0, shuffle=False, seed=0, rank=trainer.dist.rank,
                            world=trainer.dist.world, pad=False)
        loader = (x for x, _ in src.batches(order, batch_size=trainer.cfg.batch_size,
                                            device=trainer.device,
                                            prep=trainer._prep(train=False)))
        with trainer._autocast():
            update_bn(loader, model)
        mods = dict(model.named_modules())
        for n, state in frozen.items():
            mods[n].load_state_dict(state)
        for m, training in modes:
            m.training = training


def averaging_callbacks(cfg: Any) -> tuple[Callback, ...]:
    """The averaging callbacks the options ask for (run before the user's and the loggers')."""
    if cfg.ema is not None:
        return (EMA(cfg.ema, cfg.ema_warmup),)
    if cfg.swa is not False:
        return (SWA(cfg.swa),)
    return ()
