"""Objective-specific training metrics reach metrics.jsonl; LCPO's reliability carries over rounds and resume."""

import json
from pathlib import Path

import pytest

from selm.io import read_jsonl
from selm.loop import resume_run, start_run
from selm.rundir import RunDir

RECIPE = Path(__file__).parents[2] / "recipes" / "lcpo.yaml"
MOMENTUM = 0.5
# Several steps a round (one micro-batch each), a fast learning rate and a large EMA step.
TINY = ["rounds=2", "prompts.per_round=8", "prompts.num_eval=2", "sampling.n=4", "eval.samples_per_prompt=1",
        "train.per_device_train_batch_size=2", "train.learning_rate=1e-2",
        f"objective={{name: lcpo, base: {{name: dpo, beta: 0.5}}, reliability: 0.9, momentum: {MOMENTUM}}}"]


def step_log(run_dir: Path, k: int) -> list[dict]:
    return [entry for entry in read_jsonl(RunDir(run_dir).round(k).file("train_log.jsonl")) if "loss" in entry]


def reliability(run_dir: Path, k: int) -> float:
    """η at the end of round k, as the round's manifest keeps it for the next round and for resume."""
    return RunDir(run_dir).round(k).manifest["phases"]["train"]["objective_state"]["reliability"]


def set_reliability(run_dir: Path, k: int, value: float) -> None:
    path = RunDir(run_dir).round(k).manifest_path
    manifest = json.loads(path.read_text())
    manifest["phases"]["train"]["objective_state"]["reliability"] = value
    path.write_text(json.dumps(manifest))


def assert_em_updates(log: list[dict], start: float, end: float) -> None:
    """Every step used the η the previous one left, η ← (1 − m)·η + m·w̄ with w̄ the step's logged
    mean posterior, and the round ended at ``end``.

    η is a float64 and the step log has it in float32 (relative rounding ≤ 2⁻²⁴); w̄ is logged as
    the float32 value the objective used, so replaying the updates in float64 gives η to float64
    rounding.
    """
    eta = start
    for entry in log:
        assert entry["lcpo/reliability"] == pytest.approx(eta, rel=2**-24, abs=0), entry["step"]
        eta = (1 - MOMENTUM) * eta + MOMENTUM * entry["lcpo/weight"]
    assert end == pytest.approx(eta, rel=1e-12, abs=0)


# Two small rounds and round 2 retrained twice: ~5 s on a quiet 2-core machine.
def test_lcpo_metrics_and_reliability_across_rounds_and_resume(tmp_path):
    out = start_run(RECIPE, TINY, output=tmp_path / "run", progress=False)
    rows = read_jsonl(RunDir(out).metrics_path)
    for k in (1, 2):
        log = step_log(out, k)
        # The round's value is the mean over its logged steps, like train/loss.
        for key in ("lcpo/reliability", "lcpo/weight", "rewards/margins"):
            assert rows[k][f"train/{key}"] == pytest.approx(sum(e[key] for e in log) / len(log), rel=1e-12)
        assert "train/tokens_per_s" not in rows[k]
    # Round 1 starts from the configured η, round 2 from the η round 1 ended with.
    assert_em_updates(step_log(out, 1), 0.9, reliability(out, 1))
    assert_em_updates(step_log(out, 2), reliability(out, 1), reliability(out, 2))

    # Redo round 2's training in a new process-like run: η is read back from round 1's manifest.
    uninterrupted = reliability(out, 2)
    RunDir(out).round(2).invalidate_from("train")
    resume_run(out, progress=False)
    assert reliability(out, 2) == uninterrupted
    # ... and really from there, whatever value it holds (not the configured one, not a copy in memory).
    set_reliability(out, 1, 0.75)
    RunDir(out).round(2).invalidate_from("train")
    resume_run(out, progress=False)
    assert_em_updates(step_log(out, 2), 0.75, reliability(out, 2))
