"""Launch selm commands as 1 or 2 gloo processes on CPU with torchrun, each with a timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N -m selm ARGS`` in the repository root.

    One thread per process in both the 1- and 2-process runs, so that matmuls reduce in the same
    order and the runs are comparable bit for bit up to the data-parallel split itself.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "selm", *args]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture
def launch() -> Callable[[int, list[str]], subprocess.CompletedProcess]:
    return _launch


@pytest.fixture
def repo() -> Path:
    return REPO
