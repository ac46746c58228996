"""Launch selm commands as 1 or 2 gloo processes on CPU with torchrun, each with a timeout; compare
what a 2-process and a 1-process run trained."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

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


def assert_same_training(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor],
                         start: dict[str, torch.Tensor], steps: int, learning_rate: float) -> None:
    """Two Adam runs from ``start`` over the same ``steps`` global batches ended at the same weights.

    The 2-process gradient is the 1-process one summed in another order, so the two differ by
    float32 rounding. Adam divides each element's gradient by its running RMS: an element whose
    gradient is rounding noise around 0 moves by up to one learning rate per step, in a direction
    the rounding picks (measured: 1.2e-5 = 0.012 lr on Intel AVX-512, 4.7e-6 on AMD AVX2). So
    elementwise the runs agree to less than one step, ``learning_rate``. In aggregate they agree
    much better: a wrong gradient in any one step (a pair lost or counted twice, a shard not
    averaged) changes that step's update of every element, about 1/steps of the distance each
    tensor travelled; the runs must agree to a tenth of that (rounding gives ~1e-5 of it).
    """
    assert one.keys() == two.keys() == start.keys()
    for name in one:
        gap, travel = (two[name] - one[name]).double(), (one[name] - start[name]).double()
        assert gap.abs().max() < learning_rate, (name, float(gap.abs().max()))
        assert gap.norm() <= travel.norm() / (10 * steps), (name, float(gap.norm() / travel.norm()))


@pytest.fixture
def same_training() -> Callable[..., None]:
    return assert_same_training
