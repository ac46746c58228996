"""RL rounds in the loop: the rollout phase and its artifacts, the critic across rounds, DAPO's
dynamic sampling, resume after SIGKILL mid-rollout and mid-update, and clear config errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selm.config import load_config
from selm.errors import ConfigError
from selm.loop import RunConfig, resume_run, start_run
from selm.loop.run import TIMING_PREFIXES

RECIPES = Path(__file__).parents[2] / "recipes"
SMALL = ["rounds=2", "prompts.per_round=8", "prompts.num_eval=4", "sampling.n=4", "eval.samples_per_prompt=1",
         "train.per_device_train_batch_size=8", "train.save_steps=1", "sampling.max_new_tokens=8"]


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)} for row in rows]


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_ppo_run_writes_rollouts_and_carries_its_critic_across_rounds(tmp_path):
    out = start_run(RECIPES / "ppo.yaml", SMALL, output=tmp_path / "run", progress=False)
    rollouts = rows(out / "rounds" / "01" / "rollouts.jsonl")
    assert len(rollouts) == 8 * 4 and metrics(out)[1]["rollouts/count"] == 32
    # The hf sampler ran the trainer's weights: its per-token log-probs are kept for the ratio.
    assert all(len(r["token_logprobs"]) == len(r["token_ids"]) for r in rollouts)
    assert {r["prompt_index"] for r in rollouts} == set(range(8))
    for k in (1, 2):
        assert (out / "rounds" / f"0{k}" / "policy" / "value_head.safetensors").is_file()
    row = metrics(out)[2]
    assert {"train/loss/value", "train/val/clipfrac", "rollout/reward", "rollout/kl"} <= set(row)
    # The pair phase is not run: no pairs.jsonl, no pair metrics.
    assert not (out / "rounds" / "01" / "pairs.jsonl").exists() and "pairs/count" not in row


def test_dynamic_sampling_keeps_only_prompts_whose_rewards_differ(tmp_path):
    # Without the overlong shaping, a rollout's reward is the judge's own.
    out = start_run(RECIPES / "dapo.yaml", SMALL + ["rounds=1", "rollouts.overlong_cache_length=0"],
                    output=tmp_path / "run", progress=False)
    groups: dict[int, list[float]] = {}
    for r in rows(out / "rounds" / "01" / "rollouts.jsonl"):
        groups.setdefault(r["prompt_index"], []).append(r["reward"])
    assert 0 < len(groups) <= 8
    assert all(len(set(rewards)) > 1 for rewards in groups.values())
    first_draw = [r["scores"] for r in rows(out / "rounds" / "01" / "scores.jsonl")]
    row = metrics(out)[1]
    assert row["dynamic_sampling/prompts_kept"] == len(groups)
    # More prompts were drawn exactly when the first draw had uninformative ones.
    uninformative = sum(len(set(s)) == 1 for s in first_draw)
    assert (row["dynamic_sampling/extra_draws"] > 0) == (uninformative > 0)


def _selm_run(args, output):
    cmd = [sys.executable, "-m", "selm", "run", str(RECIPES / "ppo.yaml"), "--quiet", "--output", str(output), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = _selm_run(SMALL, out)
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    return metrics(out)


@pytest.mark.parametrize("kill_point", [
    "rounds/01/rollouts.jsonl",          # the rollout phase wrote its artifact, not yet its manifest entry
    "rounds/01/train/checkpoint-2",      # in the middle of the PPO epochs
])
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, uninterrupted, kill_point):
    out = tmp_path / "run"
    proc = _selm_run(SMALL, out)
    target, deadline = out / kill_point, time.monotonic() + 180
    while not target.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"{kill_point} did not appear"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resume_run(out, progress=False)
    assert without_timing(metrics(out)) == without_timing(uninterrupted)


@pytest.mark.parametrize(("overrides", "message"), [
    (["objective=grpo", "reference=initial", "sampling.n=1"],
     "rollouts.advantage 'grpo' compares the samples of each prompt: sampling.n must be >= 2, got 1"),
    (["objective=ppo", "reference=none"], "objective 'ppo' trains a critic, whose targets come from the gae estimator"),
    (["objective=grpo", "reference=none"], "objective 'grpo' needs a reference; reference: none is impossible"),
    (["objective={name: grpo, beta: 0}", "reference=initial", "rollouts.advantage={name: rloo, kl_coef: 0.1}",
      "sampling.n=1"], "rollouts.advantage 'rloo' compares the samples of each prompt"),
    (["objective={name: grpo, beta: 0}", "reference=none", "rollouts.advantage=nope"], "unknown advantage estimator"),
    (["objective=rloo", "reference=none", "rollouts.advantage=rloo"],
     "rollouts.advantage 'rloo' puts the KL to the reference in the reward (kl_coef 0.05): set reference"),
])
def test_bad_rl_configs_are_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(RunConfig, None, overrides)


def test_pf_ppo_filter_and_reliability_against_the_gold_reward(tmp_path):
    # With the gold reward as the judge, the judge explains the gold reward exactly: R² = 1.
    out = start_run(RECIPES / "pf-ppo.yaml", SMALL + ["rounds=1", "sampling.n=5", "eval.samples_per_prompt=3",
                                                      "judge={kind: gold, task: sort}", "rollouts.filter=best_worst"],
                    output=tmp_path / "run", progress=False)
    rollouts = rows(out / "rounds" / "01" / "rollouts.jsonl")
    scores = {i: r["scores"] for i, r in enumerate(rows(out / "rounds" / "01" / "scores.jsonl"))}
    assert len(rollouts) == 2 * 8
    for r in rollouts:  # the kept two are a best and a worst of their prompt
        assert r["reward"] in (max(scores[r["prompt_index"]]), min(scores[r["prompt_index"]]))
    row = metrics(out)[1]
    assert row["rollouts/kept_fraction"] == pytest.approx(2 / 5)
    for key in ("reliability/r2_responses_none", "reliability/r2_responses_best_worst"):
        assert row[key] == pytest.approx(1.0, abs=1e-9)
    assert "reliability/r2_none" in metrics(out)[0]


def test_reward_robust_ensemble_logs_its_members_and_pama_trains_on_reward_vectors(tmp_path):
    two = '[{kind: gold, task: sort}, {kind: function, callable: "selm.tasks.shaping:brevity"}]'
    robust = start_run(RECIPES / "reward-robust.yaml", SMALL + ["rounds=1", f"judge.judges={two}"],
                       output=tmp_path / "robust", progress=False)
    row = metrics(robust)[1]
    assert {"judge/member_0_mean", "judge/member_1_mean"} <= set(row) and row["judge/spread_mean"] >= 0
    pama = start_run(RECIPES / "pama.yaml", SMALL + ["rounds=1"], output=tmp_path / "pama", progress=False)
    rollouts = rows(pama / "rounds" / "01" / "rollouts.jsonl")
    assert all(len(r["reward_vector"]) == 2 for r in rollouts)
    # The brevity objective is −words/10 of the response.
    scores = rows(pama / "rounds" / "01" / "scores.jsonl")
    assert all(len(v) == 2 and sum(v) / 2 == pytest.approx(s) for r in scores for v, s in zip(r["vectors"], r["scores"]))
    assert metrics(pama)[1]["train/steps"] > 0


def test_salsa_soup_of_the_start_with_itself_is_the_initial_reference(tmp_path):
    """(w + w)/2 = w exactly in floating point: the run is the reference: initial run, number for number."""
    common = SMALL + ["rounds=1"]
    soup = start_run(RECIPES / "salsa.yaml", common + ["reference={soup: [builtin:sort, builtin:sort]}"],
                     output=tmp_path / "soup", progress=False)
    initial = start_run(RECIPES / "salsa.yaml", common + ["reference=initial"], output=tmp_path / "initial",
                        progress=False)
    assert without_timing(metrics(soup)) == without_timing(metrics(initial))
    manifest = json.loads((soup / "rounds" / "01" / "manifest.json").read_text())
    assert manifest["phases"]["train"]["reference"] == "soup"


def test_a_soup_of_models_of_different_shapes_is_refused_before_the_run(tmp_path):
    from selm.modeling.tiny import build_tiny_model

    other = tmp_path / "other"
    build_tiny_model(vocab_size=50, hidden_size=32).save_pretrained(other)
    with pytest.raises(ConfigError, match="reference soup: models differ at"):
        start_run(RECIPES / "salsa.yaml", SMALL + [f"reference={{soup: [builtin:sort, {other}]}}"],
                  output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_pairwise_judge_rewards_each_rollout_with_its_win_rate_in_its_group(tmp_path, monkeypatch):
    (tmp_path / "shorter.py").write_text(
        "def prefer(prompt, a, b):\n    return 1.0 if len(a) < len(b) else 0.5 if len(a) == len(b) else 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = start_run(RECIPES / "rloo.yaml", SMALL + ["rounds=1", "judge={kind: pairwise, callable: 'shorter:prefer'}",
                                                    "eval.judge={kind: gold, task: sort}"],
                    output=tmp_path / "run", progress=False)
    samples = rows(out / "rounds" / "01" / "samples.jsonl")
    by_prompt = {}
    for r in rows(out / "rounds" / "01" / "rollouts.jsonl"):
        by_prompt.setdefault(r["prompt_index"], {})[r["candidate_index"]] = r["reward"]
    for p, rewards in by_prompt.items():
        lengths = [len(c["text"]) for c in samples[p]["candidates"]]
        n = len(lengths)
        for i, reward in rewards.items():
            wins = sum((lengths[i] < lengths[j]) + 0.5 * (lengths[i] == lengths[j]) for j in range(n) if j != i)
            assert reward == pytest.approx(wins / (n - 1))


def test_ppo_with_lora_trains_adapters_and_a_critic_against_the_adapter_free_reference(tmp_path):
    out = start_run(RECIPES / "ppo.yaml", SMALL + ["lora={r: 4, alpha: 8}"], output=tmp_path / "run", progress=False)
    policy = out / "rounds" / "02" / "policy"
    assert (policy / "adapter_config.json").is_file() and (policy / "value_head.safetensors").is_file()
    first, second = metrics(out)[1], metrics(out)[2]
    # Zero-initialised adapters: round 1 samples from π0 itself, so its k1 to the adapter-free
    # reference is float noise (sampler's vs engine's log-probs, ~1e-6 per token); round 2 samples
    # from the trained adapters and its k1 estimate is orders of magnitude away from that noise.
    assert abs(first["rollout/kl"]) < 1e-4
    assert abs(second["rollout/kl"]) > 100 * abs(first["rollout/kl"]) and second["train/steps"] > 0


def test_mpo_trains_dpo_on_easy_prompts_then_rl_on_difficult_ones_against_the_dpo_policy(tmp_path):
    out = start_run(RECIPES / "mpo.yaml", SMALL + ["mpo.gap_quantile=0.5"], output=tmp_path / "run", progress=False)
    first, second = metrics(out)[1], metrics(out)[2]
    assert (out / "rounds" / "01" / "pairs.jsonl").is_file() and not (out / "rounds" / "01" / "rollouts.jsonl").exists()
    assert (out / "rounds" / "02" / "rollouts.jsonl").is_file() and not (out / "rounds" / "02" / "pairs.jsonl").exists()
    # Round 1: pairs only from prompts whose gap is above the median gap.
    gaps = sorted(max(r["scores"]) - min(r["scores"]) for r in rows(out / "rounds" / "01" / "scores.jsonl"))
    median = (gaps[3] + gaps[4]) / 2
    assert all(p["margin"] > median for p in rows(out / "rounds" / "01" / "pairs.jsonl"))
    assert first["mpo/easy_prompts"] + first["mpo/difficult_prompts"] == 8
    # Round 2: only difficult prompts, sampled from π_1, against the reference π_1 itself: k1 is
    # float noise of the sampler's against the engine's log-probs.
    assert second["rollouts/prompts"] == second["mpo/difficult_prompts"]
    assert abs(second["rollout/kl"]) < 1e-4
    assert json.loads((out / "rounds" / "02" / "manifest.json").read_text())["phases"]["train"]["reference"] == "mpo_dpo_policy"


def test_ppo_with_a_separate_critic_initialised_from_a_reward_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from selm.tasks.sources import resolve_model_source

    rm = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(resolve_model_source("builtin:sort"), num_labels=1).save_pretrained(rm)
    out = start_run(RECIPES / "ppo.yaml", SMALL + [f"rollouts.critic_model={rm}"], output=tmp_path / "run",
                    progress=False)
    for k in (1, 2):
        policy = out / "rounds" / f"0{k}" / "policy"
        assert (policy / "critic" / "model.safetensors").is_file() and not (policy / "value_head.safetensors").exists()
    assert metrics(out)[2]["train/loss/value"] > 0
