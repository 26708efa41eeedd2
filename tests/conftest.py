"""Test-wide settings: no network, deterministic seeds, small thread counts."""

from __future__ import annotations

import os

import pytest
import torch

# Tests never touch the network: transferkit refuses downloads when this is set.
os.environ["TRANSFERKIT_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


# Under pytest-xdist each worker gets one core: one intra-op thread each avoids two workers'
# thread pools fighting over two cores (which made small ops ~30x slower here).
if os.environ.get("PYTEST_XDIST_WORKER"):
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy/scipy BLAS too (LogME's SVD was 20x slower oversubscribed)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache (so that no cached download is used by accident)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"
