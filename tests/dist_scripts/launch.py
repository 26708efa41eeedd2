"""The one torchrun launch the distributed tests share: 2 CPU processes (gloo) running a
worker script of this folder, offline, one intra-op thread each, with a fresh port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transferkit.distributed import BACKEND_ENV

SCRIPTS = Path(__file__).parent

#: The variables torchrun sets; a launch from inside a launched process must not inherit them.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two(script: str, *args: str, timeout: int = 300) -> None:
    """Run ``SCRIPTS/script *args`` under ``torchrun --nproc_per_node=2``; fail with its output."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", TRANSFERKIT_OFFLINE="1")
    env.pop(BACKEND_ENV, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           str(SCRIPTS / script), *args]
    proc = subprocess.run(cmd, cwd=SCRIPTS, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread in the test process too, as each torchrun worker has
    (OMP_NUM_THREADS=1): the one-process references then compute as the workers do. A test
    module gets it with ``from launch import one_torch_thread``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def rank_result(out: Path, name: str, rank: int):
    """What rank ``rank`` of the launch saved as ``name`` (the workers' ``save``)."""
    return torch.load(out / f"{name}_rank{rank}.pt", weights_only=False)


def same_on_both_ranks(out: Path, name: str) -> dict:
    """Rank 0's result ``name``, after checking that rank 1 ended with the very same weights."""
    r0, r1 = rank_result(out, name, 0), rank_result(out, name, 1)
    for key, value in r0["state"].items():
        torch.testing.assert_close(r1["state"][key], value, rtol=0, atol=0, msg=key)
    return r0
