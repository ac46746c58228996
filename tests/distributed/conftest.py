"""Launch selm commands as 1 or 2 gloo processes on CPU with torchrun, each with a timeout; compare
what a 2-process and a 1-process run trained."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).parents[2]
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(nproc: int, args: list[str], port: int | None = None, nnodes: int = 1,
                   node_rank: int = 0) -> list[str]:
    """``python -m torch.distributed.run ... -m selm ARGS``: ``nproc`` processes on each of ``nnodes``
    nodes (this one is ``node_rank``), meeting at 127.0.0.1."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node_rank", str(node_rank),
            "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port",
            str(port or free_port()), "-m", "selm", *args]


def launch_env(**extra: str) -> dict[str, str]:
    """One thread per process in every run, so that matmuls reduce in the same order and the runs
    are comparable bit for bit up to the data-parallel split itself."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def _launch(nproc: int, args: list[str], check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run ``selm ARGS`` as ``nproc`` processes in the repository root; with ``check``, it must succeed."""
    command = launch_command(nproc, args)
    proc = subprocess.run(command, cwd=REPO, env=launch_env(**env), capture_output=True, text=True, timeout=TIMEOUT_S)
    if check:
        assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="session")
def launch() -> Callable[..., subprocess.CompletedProcess]:
    return _launch


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def write_sort_recipe(folder: Path, name: str, per_device: int, extra: str = "",
                      model: str = "builtin:sort") -> Path:
    """A `selm train` recipe: a full epoch of 229 train pairs (27 of 256 held out) in global batches
    of 8 (per-device batch × 2 accumulation × processes): 28 full steps and a short last one of 5
    pairs, which 2 processes split 3 + 2 (the second pads a micro-batch). Learning rate 1e-3."""
    path = folder / f"{name}.yaml"
    path.write_text(f"""model_name_or_path: {model}
dataset: {REPO / 'examples' / 'data' / 'sort-preferences.jsonl'}
eval_split_ratio: 0.1055
objective: {{name: selm, beta: 0.1, alpha: 0.001}}
output_dir: {folder / name}
train: {{learning_rate: 1.0e-3, per_device_train_batch_size: {per_device}, gradient_accumulation_steps: 2,
        num_train_epochs: 1, max_length: 64, logging_steps: 1, warmup_ratio: 0.0, dtype: float32,
        reference_cache_dir: {folder / 'cache' / name}{extra}}}
""")
    return path


LORA = "\nlora: {r: 4, alpha: 8, target_modules: [q_proj, v_proj]}\n"


def write_lora_recipe(folder: Path, name: str, per_device: int, extra: str = "") -> Path:
    """The sort recipe (write_sort_recipe) training rank-4 LoRA adapters on q_proj and v_proj."""
    recipe = write_sort_recipe(folder, name, per_device, extra)
    recipe.write_text(recipe.read_text() + LORA)
    return recipe


@pytest.fixture(scope="session")
def lora_recipe() -> Callable[..., Path]:
    return write_lora_recipe


@pytest.fixture(scope="session")
def lora_runs(tmp_path_factory) -> Path:
    """A folder holding the 1-process LoRA run (per-device batch 4) of the sort recipe, ``one``:
    what the sharded LoRA runs are compared with."""
    folder = tmp_path_factory.mktemp("lora-runs")
    _launch(1, ["train", str(write_lora_recipe(folder, "one", 4)), "--quiet"])
    return folder


def write_zero3_config(folder: Path) -> Path:
    """A DeepSpeed JSON config as a TRL / Accelerate user writes one ("auto" where selm's train.*
    decides), with ZeRO-3 partitioning every parameter: by default ZeRO-3 keeps parameters under
    1e5 elements whole on every process, which would be all of this tiny model's."""
    path = folder / "zero3.json"
    path.write_text(json.dumps({
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}},
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
    }))
    return path


@pytest.fixture(scope="session")
def zero3_config() -> Callable[[Path], Path]:
    return write_zero3_config


def train_log(folder: Path) -> list[dict]:
    """The step entries of a `selm train` output folder's train_log.jsonl."""
    return [e for e in map(json.loads, (folder / "train_log.jsonl").read_text().splitlines()) if "loss" in e]


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


def assert_same_adapter(one: Path, two: Path, steps: int, learning_rate: float) -> None:
    """The LoRA adapter folder ``two`` holds the adapter ``one`` trained (see assert_same_training)."""
    from safetensors.torch import load_file

    assert (two / "adapter_config.json").is_file() and not (two / "model.safetensors").exists()
    a, b = (load_file(folder / "adapter_model.safetensors") for folder in (one, two))
    assert a.keys() == b.keys() and any("lora_A" in k for k in a)
    # PEFT starts every B at 0 (A is random): B's start is known exactly, so the aggregate check
    # runs on B; every element of both is within one learning rate, as in assert_same_training.
    lora_b = sorted(k for k in a if "lora_B" in k)
    assert_same_training({k: a[k] for k in lora_b}, {k: b[k] for k in lora_b},
                         {k: torch.zeros_like(a[k]) for k in lora_b}, steps=steps, learning_rate=learning_rate)
    for name in a:
        assert (b[name] - a[name]).abs().max() < learning_rate, name


@pytest.fixture(scope="session")
def same_adapter() -> Callable[..., None]:
    return assert_same_adapter


@pytest.fixture(scope="session")
def sort_recipe() -> Callable[..., Path]:
    return write_sort_recipe


@pytest.fixture(scope="session")
def read_train_log() -> Callable[[Path], list[dict]]:
    return train_log


NAN_OBJECTIVE = '''
from selm.objectives import Objective, ObjectiveOutput
from selm.objectives.base import register_objective


@register_objective("always_nan")
class AlwaysNaN(Objective):
    requires = frozenset()

    def compute(self, batch):
        return ObjectiveOutput(losses=batch.policy_chosen_logps * float("nan"))
'''


def _train_on_nan_losses(folder: Path, extra: str) -> subprocess.CompletedProcess:
    """``selm train`` as 2 processes on the sort recipe (``extra`` train keys) with an objective
    whose every loss is NaN (a ``--plugin`` module), run ``folder / "nan"``; not checked."""
    (folder / "nan_objective.py").write_text(NAN_OBJECTIVE)
    recipe = write_sort_recipe(folder, "nan", 2, f"{extra}, max_nonfinite_steps: 3")
    recipe.write_text(recipe.read_text().replace("{name: selm, beta: 0.1, alpha: 0.001}", "always_nan"))
    return _launch(2, ["--plugin", "nan_objective", "train", str(recipe), "--quiet"], check=False,
                   PYTHONPATH=f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


@pytest.fixture(scope="session")
def train_on_nan_losses() -> Callable[[Path, str], subprocess.CompletedProcess]:
    return _train_on_nan_losses


def assert_same_bits(one: Path, two: Path) -> None:
    """The two saved ``model.safetensors`` hold the same tensors, bit for bit."""
    from safetensors.torch import load_file

    first, second = load_file(one), load_file(two)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(second[name], first[name]), name


@pytest.fixture(scope="session")
def same_bits() -> Callable[[Path, Path], None]:
    return assert_same_bits


def _kill_when(nproc: int, args: list[str], target: Path, timeout: float = TIMEOUT_S) -> None:
    """Start ``selm ARGS`` as ``nproc`` processes and SIGKILL all of them (launcher included) as
    soon as ``target`` exists."""
    proc = subprocess.Popen(launch_command(nproc, args), cwd=REPO, env=launch_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not target.exists():
            assert proc.poll() is None, f"the run ended before {target} appeared: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"{target} did not appear in {timeout} s"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def kill_when() -> Callable[..., None]:
    return _kill_when


def _launch_nodes(nnodes: int, args: list[str]) -> None:
    """Run ``selm ARGS`` as ``nnodes`` "nodes" of one process each, all on this machine: one
    launcher per node (``--node_rank``), as on a cluster; every one must succeed."""
    port = free_port()
    procs = [subprocess.Popen(launch_command(1, args, port=port, nnodes=nnodes, node_rank=rank), cwd=REPO,
                              env=launch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(nnodes)]
    for rank, proc in enumerate(procs):
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, f"node {rank} failed:\n{out[-3000:]}\n{err[-6000:]}"


@pytest.fixture(scope="session")
def launch_nodes() -> Callable[[int, list[str]], None]:
    return _launch_nodes


def assert_same_step_metrics(one: list[dict], two: list[dict], keys: tuple[str, ...] = ("loss", "rewards/margins")
                             ) -> None:
    """Two runs' step logs (same global batches) agree: ``keys`` and the gradient norm (before clipping).

    At step 1 both runs hold the same weights, and every metric is the same sum taken in another
    order: float32 rounding, ~1e-6 relative (1e-4 leaves a margin). Later steps add the weights'
    gap (see assert_same_training). The loss and the margins follow the large-gradient directions,
    where the runs agree to ~1e-5; the gradient norm also reads the elements whose gradient is
    rounding noise, which move up to one learning rate a step either way, so it agrees to ~1e-4
    (1.3e-4 measured at step 15 on AMD EPYC): 1e-3. A pair lost or counted twice in a global batch
    of 8 moves a step's gradient norm by ~10 %, far beyond either bound.
    """
    assert [e["step"] for e in two] == [e["step"] for e in one]
    for a, b in zip(one, two):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
        rel = 1e-4 if a["step"] == 1 else 1e-3
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=rel), (a["step"], "grad_norm")


@pytest.fixture(scope="session")
def same_step_metrics() -> Callable[..., None]:
    return assert_same_step_metrics


@pytest.fixture(scope="session")
def tied_model(tmp_path_factory) -> Path:
    """The built-in sort model with its output layer tied to the input embedding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm.tasks.sources import resolve_model_source

    source = resolve_model_source("builtin:sort")
    untied = AutoModelForCausalLM.from_pretrained(source)
    config = untied.config
    config.tie_word_embeddings = True
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict({k: v for k, v in untied.state_dict().items() if k != "lm_head.weight"}, strict=False)
    model.tie_weights()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    folder = tmp_path_factory.mktemp("tied") / "model"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tied_runs(tmp_path_factory, tied_model) -> Path:
    """A folder holding the 1-process run (per-device batch 4) of the sort recipe on the tied
    model, ``one`` (its reference cache in ``cache/one``): what the sharded runs are compared with."""
    folder = tmp_path_factory.mktemp("tied-runs")
    _launch(1, ["train", str(write_sort_recipe(folder, "one", 4, model=tied_model)), "--quiet"])
    return folder
