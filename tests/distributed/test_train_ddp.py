"""`selm train` as 2 DDP processes (gloo, CPU) ends where 1 process with the same global batch does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selm.tasks.sources import resolve_model_source

STEPS, GLOBAL_BATCH, LAST_BATCH, LEARNING_RATE = 29, 8, 5, 1e-3


def test_two_processes_match_one_process(tmp_path, launch, same_training, same_step_metrics, sort_recipe,
                                         read_train_log):
    launch(1, ["train", str(sort_recipe(tmp_path, "one", 4)), "--quiet"])
    launch(2, ["train", str(sort_recipe(tmp_path, "two", 2)), "--quiet"])
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    start = load_file(Path(resolve_model_source("builtin:sort")) / "model.safetensors")
    same_training(one, two, start, steps=STEPS, learning_rate=LEARNING_RATE)
    # The main process alone wrote the log, one line per step, with metrics of the global batch.
    logs = read_train_log(tmp_path / "one"), read_train_log(tmp_path / "two")
    assert [e["step"] for e in logs[1]] == list(range(1, STEPS + 1))
    same_step_metrics(*logs)
    for a, b in zip(*logs):
        # Accuracy counts signs of margins: a pair whose margin is rounding noise around 0 (every
        # pair at step 1, where policy = reference) may count on either side in either run.
        if a["step"] > 1:
            pairs = GLOBAL_BATCH if a["step"] < STEPS else LAST_BATCH
            assert abs(b["rewards/accuracies"] - a["rewards/accuracies"]) <= 1 / pairs + 1e-12, a["step"]
    results = [json.loads((tmp_path / n / "train_results.json").read_text()) for n in ("one", "two")]
    assert results[1]["eval/loss"] == pytest.approx(results[0]["eval/loss"], rel=1e-4)
    assert not list((tmp_path / "two").glob("*.tmp"))


@pytest.mark.slow  # ~40 s; multi-process resume is checked under FSDP (test_train_fsdp.py, after SIGKILL)
def test_two_processes_resume_from_a_checkpoint(tmp_path, launch, sort_recipe, read_train_log):
    """Cut after step 15 (checkpoint-15 kept), resumed by 2 processes: the same weights as uncut."""
    whole = sort_recipe(tmp_path, "whole", 2, ", save_steps: 15")
    launch(2, ["train", str(whole), "--quiet"])
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-15", cut / "checkpoint-15")
    lines = (tmp_path / "whole" / "train_log.jsonl").read_text().splitlines()
    (cut / "train_log.jsonl").write_text("".join(x + "\n" for x in lines if json.loads(x)["step"] <= 15))
    resumed = launch(2, ["train", str(sort_recipe(tmp_path, "cut", 2, ", save_steps: 15")), "--resume"])
    assert "resuming from" in resumed.stdout and "checkpoint-15" in resumed.stdout
    # The same 2 processes do the same operations in the same order, cut or not: the same bits.
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(b[name], a[name]), name
    assert [e["step"] for e in read_train_log(cut)] == list(range(1, 30))
