"""The online loop: run directory, metrics, reference modes, resume after SIGKILL, improvement."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selm.config import load_config
from selm.errors import UserError
from selm.loop import OnlineRun, RunConfig, resume_run, start_run
from selm.loop.run import TIMING_PREFIXES
from selm.rundir import RunDir

SMALL = ["rounds=2", "prompts.per_round=16", "prompts.num_eval=8", "sampling.n=4",
         "eval.samples_per_prompt=1", "train.per_device_train_batch_size=2", "train.save_steps=1"]
REQUIRED = {"round", "reward_mean", "kl", "win_rate_vs_initial", "length_mean", "gold_reward_mean",
            "win_rate_vs_previous", "eos_rate", "distinct_2"}


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)} for row in rows]


def test_run_writes_the_run_directory(tmp_path):
    run_dir = start_run(None, SMALL, output=tmp_path / "run", progress=False)
    rows = metrics(run_dir)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(REQUIRED <= set(r) for r in rows)
    assert rows[0]["kl"] == 0.0 and rows[0]["win_rate_vs_initial"] is None
    assert 0 <= rows[2]["win_rate_vs_initial"] <= 1
    assert rows[1]["pairs/count"] > 0 and "train/rewards/accuracies" in rows[1]
    for k in (1, 2):
        rd = run_dir / "rounds" / f"{k:02d}"
        manifest = json.loads((rd / "manifest.json").read_text())
        assert list(manifest["phases"]) == ["sample", "judge", "pair", "train", "evaluate"]
        assert all(p["status"] == "done" and len(p["sha256"]) == 64 for p in manifest["phases"].values())
        assert manifest["phases"]["sample"]["policy_fingerprint"] != manifest["phases"]["train"]["policy_fingerprint"]
        for name in ("samples.jsonl", "scores.jsonl", "pairs.jsonl", "eval.jsonl", "train_log.jsonl", "policy/config.json"):
            assert (rd / name).is_file(), name
        assert not (rd / "train").exists()  # checkpoints are removed once the policy is saved
        samples = [json.loads(x) for x in (rd / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 16 and all(len(s["candidates"]) == 4 for s in samples)
        assert all(s["explore"] is not None for s in samples)  # SELM: the greedy response y0
    for name in ("index.html", "report.md", "reward.png", "reward_vs_kl.png", "win_rate.png", "length.png", "training.png"):
        assert (run_dir / "report" / name).is_file(), name
    assert load_config(RunConfig, run_dir / "config.yaml").rounds == 2
    assert not list(run_dir.rglob("*.tmp*"))


def test_chunks_are_disjoint_and_eval_prompts_fixed(tmp_path):
    run = OnlineRun(load_config(RunConfig, None, SMALL), RunDir(tmp_path), progress=False)
    r1, r2 = run.prompts.for_round(1), run.prompts.for_round(2)
    assert len(r1) == len(r2) == 16 and not set(r1) & set(r2)
    assert not set(r1 + r2) & set(run.prompts.eval)


def test_existing_run_directory_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="already holds a run"):
        start_run(None, SMALL, output=tmp_path / "run", progress=False)


@pytest.mark.parametrize("mode", ["initial", "round_start", "ema"])
def test_reference_modes(tmp_path, mode):
    run = OnlineRun(load_config(RunConfig, None, SMALL + [f"reference={mode}", "reference_ema_decay=0.25"]),
                    RunDir(tmp_path), progress=False)
    pi0 = run.policies.policy(0)
    initial_state = {k: v.clone() for k, v in pi0.state_dict().items()}
    moved = {k: v + 0.01 for k, v in initial_state.items()}  # stands for the round-1 policy
    if mode == "ema":  # round 2: 0.25 · π_ref,1 (= π0, saved in round 1) + 0.75 · round-start policy
        run.policies.reference_for_round(1, pi0)
        pi0.load_state_dict(moved)
        ref = run.policies.reference_for_round(2, pi0).model.state_dict()
        expected = {k: 0.25 * initial_state[k] + 0.75 * moved[k] for k in moved}
    else:
        pi0.load_state_dict(moved)
        ref = run.policies.reference_for_round(1, pi0).model.state_dict()
        expected = initial_state if mode == "initial" else moved
    for key, value in expected.items():
        torch.testing.assert_close(ref[key], value, atol=1e-6, rtol=0, msg=key)


def test_online_simpo_runs_without_reference(tmp_path):
    run_dir = start_run(None, SMALL + ["rounds=1", "objective=simpo", "reference=none"], output=tmp_path / "r", progress=False)
    assert metrics(run_dir)[1]["train/steps"] > 0
    manifest = json.loads((run_dir / "rounds" / "01" / "manifest.json").read_text())
    assert manifest["phases"]["train"]["reference"] == "none"


def _selm_run(args, output, **popen):
    cmd = [sys.executable, "-m", "selm", "run", "--quiet", "--output", str(output), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def _kill_when(output: Path, relative: str, timeout: float = 180.0) -> None:
    proc = _selm_run(SMALL, output)
    target = output / relative
    deadline = time.monotonic() + timeout
    while not target.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {relative} appeared: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{relative} did not appear in {timeout} s")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = _selm_run(SMALL, out)
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    return metrics(out)


@pytest.mark.parametrize("kill_point", [
    "rounds/00/eval.jsonl",              # inside round 0's evaluate, before its manifest entry
    "rounds/01/scores.jsonl",            # between judge and pair
    "rounds/01/train/checkpoint-2",      # in the middle of training
    "rounds/02/samples.jsonl",           # early in round 2
])
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, uninterrupted, kill_point):
    out = tmp_path / "run"
    _kill_when(out, kill_point)
    assert not (out / "metrics.jsonl").exists() or len(metrics(out)) < 3
    resume_run(out, progress=False)
    assert without_timing(metrics(out)) == without_timing(uninterrupted)
    samples = [json.loads(x) for x in (out / "rounds" / "01" / "samples.jsonl").read_text().splitlines()]
    assert [s["prompt_index"] for s in samples] == list(range(16))  # nothing lost or duplicated


def test_corrupted_artifact_is_redone_with_a_warning(tmp_path):
    out = start_run(None, SMALL + ["rounds=1"], output=tmp_path / "run", progress=False)
    before = without_timing(metrics(out))
    scores = out / "rounds" / "01" / "scores.jsonl"
    scores.write_text(scores.read_text()[:-20])
    with pytest.warns(UserWarning, match="scores.jsonl: missing or checksum mismatch"):
        resume_run(out, progress=False)
    assert without_timing(metrics(out)) == before


def test_quickstart_gold_reward_rises_beyond_seed_spread(tmp_path):
    """A reduced quickstart (64 instead of 256 prompts a round, 32 held-out prompts, 3 rounds) on 3
    seeds: the last round's held-out gold reward exceeds round 0 on every seed, and the mean gain is
    larger than the spread of the final rewards across seeds."""
    finals, gains = [], []
    for seed in (1, 2, 3):
        rows = metrics(start_run(None, [f"seed={seed}", "prompts.per_round=64", "prompts.num_eval=32"],
                                 output=tmp_path / f"s{seed}", progress=False))
        finals.append(rows[-1]["gold_reward_mean"])
        gains.append(rows[-1]["gold_reward_mean"] - rows[0]["gold_reward_mean"])
    assert min(gains) > 0.02, gains
    assert sum(gains) / 3 > max(finals) - min(finals), (gains, finals)


def test_dataset_responses_join_the_candidates(tmp_path):
    """SELM's recipe: one greedy policy answer ranked with the dataset's chosen and rejected."""
    from selm.tasks import get_task

    task = get_task("sort")
    prefs = tmp_path / "prefs.jsonl"
    prompts = task.train_prompts(8, 0)
    prefs.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": " 9 9"}) + "\n"
                             for p, c in zip(prompts, task.reference_responses(prompts))))
    out = start_run(None, ["rounds=1", "prompts.per_round=8", "prompts.num_eval=4", f"prompts.train={prefs}",
                           "prompts.dataset_responses=true", "sampling.n=1", "sampling.temperature=0"],
                    output=tmp_path / "run", progress=False)
    samples = [json.loads(x) for x in (out / "rounds" / "01" / "samples.jsonl").read_text().splitlines()]
    assert all(len(s["candidates"]) == 3 and [c.get("source") for c in s["candidates"]][1:] == ["dataset"] * 2
               for s in samples)
    pairs = [json.loads(x) for x in (out / "rounds" / "01" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen_score"] == 1.0 for p in pairs)  # the sorted dataset answer always wins


def test_samples_are_stamped_and_stale_ones_are_not_trained_on(tmp_path):
    """Every sample row names the weights it came from; training refuses a round whose samples came
    from other weights than its start policy (a sampler left serving stale weights)."""
    from types import SimpleNamespace

    from selm.artifacts import SampleRow, read_rows, write_rows
    from selm.modeling.loading import model_fingerprint
    from selm.modeling.tiny import build_tiny_model

    out = start_run(None, [*SMALL, "rounds=1"], output=tmp_path / "run", progress=False)
    rows = read_rows(RunDir(out).round(1).file("samples.jsonl"), SampleRow)
    manifest = RunDir(out).round(1).manifest["phases"]["sample"]
    assert {r.weights for r in rows} == {manifest["policy_fingerprint"]} and len(manifest["policy_fingerprint"]) == 64

    policy = build_tiny_model(300)
    fake = SimpleNamespace(policies=SimpleNamespace(for_training=lambda k: policy,
                                                    fingerprint=lambda k: model_fingerprint(policy)))
    samples = tmp_path / "samples.jsonl"
    rd = SimpleNamespace(file=lambda name: samples)
    write_rows(samples, [SampleRow(0, "p", [1], [], None, model_fingerprint(policy))])
    assert OnlineRun._round_start_policy(fake, 1, rd) is policy
    write_rows(samples, [SampleRow(0, "p", [1], [], None, "0" * 64)])
    with pytest.raises(UserError, match="stale samples are not trained on"):
        OnlineRun._round_start_policy(fake, 1, rd)


def test_a_run_that_fails_before_its_first_phase_leaves_no_run_directory(tmp_path):
    """Round 0's evaluation is the first phase: a judge that fails there leaves nothing, so the
    corrected command can reuse --output (a later failure leaves a resumable run)."""
    judge = tmp_path / "judge.py"
    judge.write_text("def score(prompt, response):\n    raise ValueError('the judge is misconfigured')\n")
    out = tmp_path / "run"
    with pytest.raises(Exception, match="misconfigured"):
        start_run(None, [*SMALL, "rounds=1", f"judge={{kind: function, callable: '{judge}:score'}}"], output=out,
                  progress=False)
    assert not out.exists()
    start_run(None, [*SMALL, "rounds=1"], output=out, progress=False)
    assert len(metrics(out)) == 2


def test_identical_samples_are_named_as_the_reason_for_no_pairs(tmp_path, capsys):
    with pytest.warns(UserWarning, match="every prompt's samples are identical .*temperature 0"):
        start_run(None, [*SMALL, "rounds=1", "sampling.temperature=0"], output=tmp_path / "run", progress=False)
    # Quiet (no bars): the rounds' summary lines are still shown.
    shown = capsys.readouterr().out
    assert "round 0/1" in shown and "round 1/1" in shown


def test_prompts_longer_than_the_budget_lose_their_start_and_are_counted(tmp_path):
    """train.max_length − sampling.max_new_tokens tokens of prompt at most (here 6): every response
    then fits train.max_length, and the cut prompts are counted in the round's metrics."""
    from selm.artifacts import SampleRow, read_rows
    from selm.data import tokenize_prompt
    from selm.modeling.loading import load_tokenizer
    from selm.tasks.sources import resolve_model_source

    out = start_run(None, [*SMALL, "rounds=1", "train.max_length=22", "sampling.max_new_tokens=16"],
                    output=tmp_path / "run", progress=False)
    rows = read_rows(RunDir(out).round(1).file("samples.jsonl"), SampleRow)
    tok = load_tokenizer(resolve_model_source("builtin:sort"))
    full = [tokenize_prompt(tok, r.prompt) for r in rows]
    assert all(r.prompt_ids == ids[-6:] for r, ids in zip(rows, full))
    assert metrics(out)[1]["prompts/truncated"] == sum(len(ids) > 6 for ids in full) > 0
