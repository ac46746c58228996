"""Objective-specific training metrics reach metrics.jsonl; LCPO's reliability carries over rounds and resume."""

import json
from pathlib import Path

import pytest

from selm.loop import resume_run, start_run
from selm.rundir import RunDir

RECIPE = Path(__file__).parents[2] / "recipes" / "lcpo.yaml"
# Several steps a round, a fast learning rate and a large EMA step, so that η really moves.
TINY = ["rounds=2", "prompts.per_round=8", "prompts.num_eval=2", "sampling.n=4", "eval.samples_per_prompt=1",
        "train.per_device_train_batch_size=2", "train.learning_rate=1e-2",
        "objective={name: lcpo, base: {name: dpo, beta: 0.5}, reliability: 0.9, momentum: 0.5}"]


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_state(run_dir, k):
    return RunDir(run_dir).round(k).manifest["phases"]["train"]["objective_state"]


# Two small rounds and a retrained one: ~3.5 s on a quiet 2-core machine.
def test_lcpo_metrics_and_reliability_across_rounds_and_resume(tmp_path):
    out = start_run(RECIPE, TINY, output=tmp_path / "run", progress=False)
    rows = jsonl(out / "metrics.jsonl")
    for k in (1, 2):
        log = [entry for entry in jsonl(out / "rounds" / f"{k:02d}" / "train_log.jsonl") if "loss" in entry]
        # The round's value is the mean over its logged steps, like train/loss.
        for key in ("lcpo/reliability", "lcpo/weight", "rewards/margins"):
            assert rows[k][f"train/{key}"] == pytest.approx(sum(e[key] for e in log) / len(log), rel=1e-9)
        assert "train/tokens_per_s" not in rows[k]
    # Round 2 starts from the η round 1 ended with (logged in float32).
    first_logged = jsonl(out / "rounds" / "02" / "train_log.jsonl")[0]["lcpo/reliability"]
    assert abs(train_state(out, 1)["reliability"] - 0.9) > 1e-3
    assert first_logged == pytest.approx(train_state(out, 1)["reliability"], rel=1e-6)

    # Redo round 2's training in a new process-like run: η is read back from round 1's manifest.
    uninterrupted = train_state(out, 2)["reliability"]
    assert abs(uninterrupted - train_state(out, 1)["reliability"]) > 1e-3
    RunDir(out).round(2).invalidate_from("train")
    resume_run(out, progress=False)
    assert train_state(out, 2)["reliability"] == pytest.approx(uninterrupted, rel=1e-9)
