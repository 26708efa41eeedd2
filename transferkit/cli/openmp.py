"""Which OpenMP wait policy the long commands (``demo``, ``finetune``) train under, chosen
from a measurement at start-up.

PyTorch's OpenMP threads spin for a while when they wait. On cores that other processes
keep busy, that made training several times slower than ``OMP_WAIT_POLICY=PASSIVE`` (threads
sleep at once); on idle cores the spinning is faster (figures: docs/benchmarks.md,
"Measurements behind rules in the code"). Which case holds depends on the machine and on what
else runs on it now, so it is measured, once every input is checked and before training
starts: the running process times a short training workload
(:func:`~transferkit.cli._omp_probe.steps_per_second`) under the default policy, a child
process times the same workload under ``PASSIVE``, and the command restarts itself with
``PASSIVE`` unless the default trained faster. The policy is read once, when torch loads
its OpenMP runtime, which importing transferkit has already done: hence the restart. A policy
the user set is kept and nothing is measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE_SECONDS = 0.5  # per policy (the child's torch import comes on top)


def _default_rate(seconds: float) -> float:
    from ._omp_probe import steps_per_second

    return steps_per_second(seconds)


def _passive_rate(seconds: float) -> float | None:
    """The probe's rate in a child process with ``OMP_WAIT_POLICY=PASSIVE``; None if it
    failed (its error is not the command's)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    probe = Path(__file__).with_name("_omp_probe.py")
    try:
        done = subprocess.run([sys.executable, str(probe), str(seconds)], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        return float(done.stdout.split()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def choose_wait_policy(seconds: float = PROBE_SECONDS) -> tuple[str | None, str]:
    """Measure both policies; return ``("PASSIVE", why)`` or ``(None, why)`` for the default.

    The default only when it trained faster; ``PASSIVE`` on a tie and when the child's
    measurement failed (the safe choice on shared cores). ``why`` is the one line that says
    what was measured.
    """
    default = _default_rate(seconds)
    passive = _passive_rate(seconds)
    if passive is None:
        return "PASSIVE", (f"OpenMP wait policy: PASSIVE ({default:.1f} steps/s with the "
                           "default policy; the PASSIVE measurement failed)")
    figures = f"{default:.1f} steps/s with the default policy, {passive:.1f} with PASSIVE"
    if default > passive:
        return None, f"OpenMP wait policy: the default ({figures})"
    return "PASSIVE", f"OpenMP wait policy: PASSIVE ({figures})"


_program_argv: list[str] | None = None


def run_as_program(argv: list[str]) -> None:
    """Record that ``transferkit`` runs as a program with ``argv`` (not called from Python),
    so that :func:`restart_before_training` may re-exec it."""
    global _program_argv
    _program_argv = list(argv)


def restart_before_training() -> None:
    """Called by ``demo`` and ``finetune`` when every input is checked and training is next:
    measure, print the one line of :func:`choose_wait_policy` on stderr, and re-exec the
    program with ``OMP_WAIT_POLICY=PASSIVE`` if that was chosen (the checks then run again).

    Does nothing when the command was called from Python, when the user set
    ``OMP_WAIT_POLICY`` (so also after the restart) and on Windows. Under ``torchrun``
    (``WORLD_SIZE`` > 1) the ranks share the cores: ``PASSIVE`` without measuring.
    """
    if _program_argv is None or "OMP_WAIT_POLICY" in os.environ or os.name == "nt":
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        policy, why = "PASSIVE", "OpenMP wait policy: PASSIVE (distributed ranks share the cores)"
    else:
        policy, why = choose_wait_policy()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"transferkit: {why}", file=sys.stderr, flush=True)
    if policy is None:
        return
    os.environ["OMP_WAIT_POLICY"] = policy
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "transferkit", *_program_argv])
