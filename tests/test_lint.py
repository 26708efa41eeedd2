"""ruff over transferkit/ with the project's configuration (``[tool.ruff]`` in pyproject.toml).

Fix what it reports (``ruff check transferkit --fix`` repairs unused imports), or, for a rule
that is wrong for a line, add ``# noqa: <code>`` with the reason.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (it comes with the 'test' extra)")
def test_ruff_passes_over_the_package():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                           "transferkit"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"ruff found problems:\n{proc.stdout}{proc.stderr}"
