"""Two "nodes" on this machine (one launcher each, `torchrun --nnodes 2 --node_rank 0|1`, one
process per node) run `selm run` with a shared run directory, sharded with FSDP2, and write
exactly what 2 processes on one node write: the README's multi-node commands, tested."""

from __future__ import annotations

from safetensors.torch import load_file

from selm.eval.keys import TIMING_PREFIXES
from selm.io import read_jsonl
from selm.rundir import RunDir

ARGS = ["run", "rounds=2", "prompts.per_round=16", "prompts.num_eval=8", "sampling.n=4", "sampling.batch_size=16",
        "eval.samples_per_prompt=2", "train.per_device_train_batch_size=2", "train.fsdp=true", "seed=3", "--quiet"]
ARTIFACTS = ("samples.jsonl", "scores.jsonl", "pairs.jsonl", "eval.jsonl")


def test_two_nodes_write_what_two_local_processes_write(tmp_path, launch, launch_nodes):
    launch(2, [*ARGS, "--output", str(tmp_path / "local")])
    launch_nodes(2, [*ARGS, "--output", str(tmp_path / "nodes")])
    local, nodes = RunDir(tmp_path / "local"), RunDir(tmp_path / "nodes")

    def metrics(run: RunDir) -> list[dict]:
        return [{k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)} for row in read_jsonl(run.metrics_path)]

    assert [row["round"] for row in metrics(nodes)] == [0, 1, 2]
    assert metrics(nodes) == metrics(local)
    for k in (1, 2):
        for name in ARTIFACTS:
            assert nodes.round(k).file(name).read_text() == local.round(k).file(name).read_text(), (k, name)
    # Round 2 trained the consolidated round-1 policy, read back and sharded again: the same bits.
    a, b = (load_file(run.round(2).file("policy") / "model.safetensors") for run in (local, nodes))
    assert a.keys() == b.keys() and all((a[n] == b[n]).all() for n in a)
