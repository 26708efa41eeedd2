"""Channels-last or contiguous: the memory format a model runs faster in, measured once.

Which format is faster depends on the architecture, the device, the dtype and the image size
(figures in docs/benchmarks.md, "Measurements behind rules in the code"), so
``channels_last="auto"`` does not guess: it times the model on
a few real images in both formats, alternating, after a warm-up, and keeps the faster one. The
answer is remembered for the process under the key ``(architecture, device, dtype, image size,
mode)``; ``mode`` is ``"train"`` (forward + backward, as in fine-tuning) or ``"infer"`` (forward
only: feature caches, ``evaluate``, ``predict``). Timing leaves the model as it was: weights,
buffers (BatchNorm statistics), gradients, ``requires_grad`` flags, train/eval flags, memory
format and the global random state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FormatChoice", "FormatTrial", "TrainFormat", "choose_channels_last",
           "in_chosen_format", "resolve_channels_last", "set_channels_last", "is_channels_last",
           "clear_choices", "TIMING_IMAGES", "FEW_IMAGES"]

#: Images per timing step (a slice of the real batch): enough to rank the formats, cheap.
TIMING_IMAGES = 16
#: Timed steps per format (after one warm-up step each); the fastest step of each counts.
TIMING_STEPS = 2

#: Channels-last is kept only when it is this much faster: formats that time alike keep the
#: default (contiguous), so that two runs rarely pick differently (their last bits would differ).
MARGIN = 1.05

_CHOICES: dict[tuple, "FormatChoice"] = {}
_clock = time.perf_counter  # the timer of every timed step (tests put a fake clock here)


def _faster_channels_last(seconds: dict[str, float]) -> bool:
    return seconds["channels_last"] * MARGIN < seconds["contiguous"]


@dataclass(frozen=True)
class FormatChoice:
    """What ``channels_last`` resolved to, and why.

    Attributes:
        channels_last: the format used.
        how: ``"given"`` (the caller said), ``"measured"`` (timed now), ``"remembered"`` (timed
            earlier in this process for the same key), ``"not applicable"`` (the backbone's
            features are not image maps, or the input is not a batch of images),
            ``"deterministic"`` (``deterministic=True``: no timing, contiguous).
        seconds: the fastest timed step per format, ``{"contiguous": s, "channels_last": s}``,
            when measured.
        key: ``(architecture, device, dtype, (H, W), mode)`` when measured or remembered.
        cost_seconds: time the choosing cost the run (the slower format's extra time on the
            real steps it ran), when chosen by :class:`FormatTrial`.
    """

    channels_last: bool
    how: str
    seconds: dict[str, float | None] | None = None
    key: tuple | None = None
    cost_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = None if self.key is None else [str(k) for k in self.key]
        return d


def clear_choices() -> None:
    """Forget every remembered choice (the next ``"auto"`` times again)."""
    _CHOICES.clear()


def is_channels_last(model: nn.Module) -> bool:
    """True when the model's 4-D weights (convolutions) are stored channels-last."""
    four = [p for p in model.parameters() if p.ndim == 4]
    return bool(four) and all(p.is_contiguous(memory_format=torch.channels_last) for p in four)


def set_channels_last(model: nn.Module, on: bool) -> None:
    """Store the model's weights channels-last (``on``) or contiguous, in place."""
    # evaluate and predict choose the format inside torch.inference_mode: weights converted
    # there would become inference tensors, which a later finetune cannot set to train.
    with torch.inference_mode(False):
        model.to(memory_format=torch.channels_last if on else torch.contiguous_format)


def resolve_channels_last(value: bool | str | None, model: nn.Module, x: Tensor | None, *,
                          mode: str, autocast: Callable[[], Any] | None = None,
                          deterministic: bool = False) -> FormatChoice:
    """``channels_last`` as given (``True``/``False``), or chosen for ``"auto"``/``None``.

    Args:
        value: ``True``, ``False``, or ``"auto"`` (``None`` means ``"auto"``).
        model: a :class:`~transferkit.TransferModel` on its device.
        x: a preprocessed batch ``(N, C, H, W)`` as the model will see it (a slice is timed);
            ``None`` when there is none (then contiguous, not applicable).
        mode: ``"train"`` (forward + backward) or ``"infer"`` (forward only).
        autocast: ``() -> context manager`` of the run's mixed precision.
        deterministic: no timing (its outcome may differ between processes): contiguous.
    """
    if isinstance(value, bool):
        return FormatChoice(value, "given")
    if value not in (None, "auto"):
        raise ValueError(f"channels_last must be True, False or 'auto', got {value!r}.")
    backbone = getattr(model, "backbone", None)
    if (x is None or x.ndim != 4 or backbone is None
            or getattr(backbone, "feature_format", "map") != "map"):
        return FormatChoice(False, "not applicable")
    if deterministic:
        return FormatChoice(False, "deterministic")
    return choose_channels_last(model, x, mode=mode, autocast=autocast)


def _key(model: nn.Module, x: Tensor, mode: str, autocast) -> tuple:
    name = getattr(getattr(model, "backbone", None), "name", type(model).__name__)
    dtype = x.dtype
    if autocast is not None:
        ctx = autocast()
        if isinstance(ctx, torch.autocast) and getattr(ctx, "_enabled", True):
            dtype = ctx.fast_dtype
    return (name, str(x.device), str(dtype), tuple(x.shape[-2:]), mode)


def choose_channels_last(model: nn.Module, x: Tensor, *, mode: str,
                         autocast: Callable[[], Any] | None = None) -> FormatChoice:
    """Time ``model`` on ``x[:TIMING_IMAGES]`` in both formats (once per key and process).

    Returns:
        A :class:`FormatChoice` with ``how="measured"`` the first time for a key, then
        ``"remembered"``.
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}.")
    key = _key(model, x, mode, autocast)
    known = _CHOICES.get(key)
    if known is not None:
        return FormatChoice(known.channels_last, "remembered", known.seconds, key)
    t0 = time.perf_counter()
    seconds = _measure(model, x[:TIMING_IMAGES], mode=mode, autocast=autocast)
    choice = FormatChoice(_faster_channels_last(seconds), "measured",
                          seconds, key, cost_seconds=time.perf_counter() - t0)
    _CHOICES[key] = choice
    return choice


def _measure(model: nn.Module, x: Tensor, *, mode: str,
             autocast: Callable[[], Any] | None) -> dict[str, float]:
    """Fastest step per format, alternating formats so that a load spike hits both."""
    best = {"contiguous": float("inf"), "channels_last": float("inf")}
    with _untouched(model, train=mode == "train"):
        for step in range(TIMING_STEPS + 1):  # step 0 warms up both formats
            for name in ("contiguous", "channels_last"):
                cl = name == "channels_last"
                set_channels_last(model, cl)
                xi = x.contiguous(memory_format=torch.channels_last if cl else
                                  torch.contiguous_format)
                t = _timed_step(model, xi, mode, autocast)
                if step:
                    best[name] = min(best[name], t)
    return best


def _timed_step(model: nn.Module, x: Tensor, mode: str, autocast) -> float:
    _sync(x.device)
    t0 = _clock()
    ctx = autocast() if autocast is not None else contextlib.nullcontext()
    if mode == "train":
        with ctx:
            out = model(x)
        out.float().sum().backward()
    else:
        with torch.inference_mode(), ctx:
            model(x)
    _sync(x.device)
    return _clock() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _untouched(model: nn.Module, *, train: bool):
    """Run timing steps, then put back everything a step may change."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    was_cl = is_channels_last(model)
    devices = [x for x in {p.device for p in params} if x.type == "cuda"]
    with torch.random.fork_rng(devices=devices):  # dropout draws leave no trace
        try:
            if train:
                model.train()  # frozen BatchNorm layers of a Backbone stay in eval mode
                for p in params:
                    p.requires_grad_(p.is_floating_point())  # as in full fine-tuning
                    p.grad = None
            else:
                model.eval()
            yield
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for p, flag, g in zip(params, flags, grads):
                p.requires_grad_(flag)
                p.grad = g
            for m, training in modes:
                m.training = training
            set_channels_last(model, was_cl)


def choice_key(model: nn.Module, x: Tensor, *, mode: str,
               autocast: Callable[[], Any] | None = None) -> tuple:
    """The key a choice is remembered under (see the module docstring)."""
    return _key(model, x, mode, autocast)


def remembered(key: tuple) -> FormatChoice | None:
    """The choice made earlier in this process for ``key``, if any."""
    known = _CHOICES.get(key)
    return None if known is None else FormatChoice(known.channels_last, "remembered",
                                                   known.seconds, key)


class FormatTrial:
    """Choose the training format on the first real training steps, at almost no cost.

    The first ``2 * (1 + TIMING_STEPS)`` steps alternate contiguous / channels-last (one
    warm-up step each, then ``TIMING_STEPS`` timed each); these are real steps of the run, so
    the only cost is the slower format's extra time on the steps it ran. Then the faster format
    is kept (and remembered for the key), the optimiser's state moved to it too.

    Usage, per training step: ``x = trial.before(x)``; the step; ``trial.after(optimizer)``,
    which returns the :class:`FormatChoice` once it is made (``None`` before).
    """

    def __init__(self, model: nn.Module, key: tuple, steps: int = TIMING_STEPS) -> None:
        self.model, self.key = model, key
        self.order = ["contiguous", "channels_last"] * (1 + steps)
        self.times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
        self.warm: dict[str, float] = {}
        self.i = 0
        self.t0 = 0.0
        self.choice: FormatChoice | None = None

    def before(self, x: Tensor) -> Tensor:
        """Put the model (and return ``x``) in this step's format; start the clock."""
        cl = self.order[self.i] == "channels_last"
        if is_channels_last(self.model) != cl:
            set_channels_last(self.model, cl)
        x = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        _sync(x.device)
        self.t0 = _clock()
        return x

    def after(self, optimizer: torch.optim.Optimizer | None = None) -> FormatChoice | None:
        """Stop the clock; after the last trial step, decide (see the class docstring)."""
        p = next(self.model.parameters(), None)
        if p is not None:
            _sync(p.device)
        t = _clock() - self.t0
        name = self.order[self.i]
        if self.i < 2:
            self.warm[name] = t
        else:
            self.times[name].append(t)
        self.i += 1
        if self.i == len(self.order):
            return self.decide(optimizer)
        return None

    def decide(self, optimizer: torch.optim.Optimizer | None = None) -> FormatChoice:
        """Keep the faster format (contiguous if a format was never timed)."""
        best = {k: min(v) if v else float("inf") for k, v in self.times.items()}
        cl = _faster_channels_last(best)
        win, lose = ("channels_last", "contiguous") if cl else ("contiguous", "channels_last")
        ref = best[win] if best[win] != float("inf") else 0.0
        lost = self.times[lose] + ([self.warm[lose]] if lose in self.warm else [])
        cost = sum(max(0.0, t - ref) for t in lost)
        set_channels_last(self.model, cl)
        if optimizer is not None:
            fmt = torch.channels_last if cl else torch.contiguous_format
            for state in optimizer.state.values():
                for k, v in state.items():
                    if isinstance(v, Tensor) and v.ndim == 4:
                        state[k] = v.contiguous(memory_format=fmt)
        both = all(self.times.values())
        self.choice = FormatChoice(cl, "measured" if both else "too few steps to time",
                                   {k: (v if v != float("inf") else None)
                                    for k, v in best.items()}, self.key, cost_seconds=cost)
        if both:  # a choice on one format's timings is not worth remembering
            _CHOICES[self.key] = self.choice
        return self.choice


#: Below this many images, ``"auto"`` does not time (it would cost more than it saves): it
#: takes a choice remembered from earlier in the process, else the model's current format.
FEW_IMAGES = 64


def in_chosen_format(model: nn.Module, batches, *, value: bool | str | None = "auto",
                     autocast: Callable[[], Any] | None = None, sink: list | None = None,
                     n_images: int | None = None, batch_size: int | None = None):
    """Yield ``(x, y)`` from ``batches`` with the model (and ``x``) in the chosen format.

    The choice (``mode="infer"``, forward only) is made on the first batch; the model's format
    is put back afterwards. ``n_images`` (the pass's size, when known; else a first batch
    shorter than ``batch_size`` is the whole pass) below :data:`FEW_IMAGES` skips the timing. ``sink``, when given, receives the
    :class:`FormatChoice`.
    """
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return
    was = is_channels_last(model)
    x0 = first[0]
    if n_images is None and batch_size is not None and len(x0) < batch_size:
        n_images = len(x0)  # the first batch is short: it is all there is
    few = (n_images is not None and n_images < FEW_IMAGES and not isinstance(value, bool)
           and x0.ndim == 4)
    if few:
        choice = remembered(_key(model, x0, "infer", autocast)) or FormatChoice(
            was, "too few images to time")
    else:
        choice = resolve_channels_last(value, model, x0, mode="infer", autocast=autocast)
    if sink is not None:
        sink.append(choice)
    cl = choice.channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    set_channels_last(model, cl)
    try:
        x, y = first
        yield (x.contiguous(memory_format=fmt) if x.ndim == 4 else x), y
        for x, y in it:
            yield (x.contiguous(memory_format=fmt) if x.ndim == 4 else x), y
    finally:
        set_channels_last(model, was)


class TrainFormat:
    """The trainer's memory format: given, remembered, or chosen on the run's own steps.

    Args:
        value: ``finetune``'s ``channels_last`` (``True``, ``False``, ``"auto"``/``None``).
        model: the model being trained, on its device.
        deterministic: ``"auto"`` becomes contiguous without timing (timing may differ
            between processes, and so would the results' last bits).
        trial: choose on real training steps (:class:`FormatTrial`); ``False`` times a few
            extra steps up front instead (compiled or distributed runs, whose model must keep
            one format).
        autocast: ``() -> context manager`` of the run's mixed precision.

    ``choices`` lists every choice made in the run (as dicts, for the History).
    """

    def __init__(self, value: bool | str | None, model: nn.Module, *, deterministic: bool,
                 trial: bool, autocast: Callable[[], Any] | None = None) -> None:
        if not (isinstance(value, bool) or value in (None, "auto")):
            raise ValueError(f"channels_last must be True, False or 'auto', got {value!r}.")
        self.value, self.model, self.deterministic = value, model, deterministic
        self.use_trial, self.autocast = trial, autocast
        self.key: tuple | None = None
        self.trial: FormatTrial | None = None
        self.choices: list[dict[str, Any]] = []
        if isinstance(value, bool):
            set_channels_last(model, value)

    @property
    def channels_last(self) -> bool:
        if isinstance(self.value, bool):  # set once (construction or pin): no walk over weights
            return self.value
        return is_channels_last(self.model)

    def _mode(self) -> str:
        bb = getattr(self.model, "backbone", self.model)
        return "train" if any(p.requires_grad for p in bb.parameters()) else "infer"

    def _record(self, choice: FormatChoice, mode: str) -> None:
        self.choices.append({"mode": mode, **choice.to_dict()})

    def resolve(self, x: Tensor, mode: str | None = None) -> bool:
        """Settle the format for batches like ``x`` (timing up front if need be); the model is
        put in it. Returns whether it is channels-last."""
        if isinstance(self.value, bool) or x.ndim != 4:
            return self.channels_last
        mode = mode or self._mode()
        key = _key(self.model, x, mode, self.autocast)
        if key == self.key and self.trial is None:
            return self.channels_last
        self.key, self.trial = key, None
        choice = remembered(key)
        if choice is None:
            choice = resolve_channels_last(self.value, self.model, x, mode=mode,
                                           autocast=self.autocast,
                                           deterministic=self.deterministic)
        set_channels_last(self.model, choice.channels_last)
        self._record(choice, mode)
        return choice.channels_last

    def before(self, x: Tensor) -> Tensor:
        """A training batch in the step's format (the model put in it too)."""
        if not isinstance(x, Tensor) or x.ndim != 4:  # cached vectors, or a dense cache's maps
            return x
        if not isinstance(self.value, bool) and not self.deterministic and self.use_trial:
            mode = self._mode()
            key = _key(self.model, x, mode, self.autocast)
            if key != self.key:
                self.key = key
                known = remembered(key)
                if known is None:
                    self.trial = FormatTrial(self.model, key)
                else:
                    self.trial = None
                    set_channels_last(self.model, known.channels_last)
                    self._record(known, mode)
            if self.trial is not None:
                return self.trial.before(x)
        elif isinstance(self.value, bool):
            # The format was set once (construction or pin): reading it back from the weights
            # would walk every parameter twice a step.
            fmt = torch.channels_last if self.value else torch.contiguous_format
            return x.contiguous(memory_format=fmt)
        else:
            self.resolve(x)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def after(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """After a training step: let a running trial time it (and decide when done)."""
        if self.trial is None:
            return
        choice = self.trial.after(optimizer)
        if choice is not None:
            self.trial = None
            self._record(choice, self.key[-1] if self.key else "train")

    def finish(self, optimizer: torch.optim.Optimizer | None = None, *,
               force: bool = False) -> None:
        """End of an epoch: a trial that has timed each format once decides on what it has
        (small epochs); else it goes on into the next epoch. ``force``: decide anyway."""
        trial = self.trial
        if trial is not None and (force or all(trial.times.values())):
            choice = trial.decide(optimizer)
            self.trial = None
            self._record(choice, self.key[-1] if self.key else "train")

    def pin(self, channels_last: bool) -> None:
        """Keep one format for the rest of the run (compiled and distributed runs)."""
        self.value = bool(channels_last)
        self.trial = None
        set_channels_last(self.model, self.value)
