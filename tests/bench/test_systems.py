"""Each benchmarked system trains on the tiny shape in seconds and reports what it measured."""

import importlib.util
import time

import pytest
import torch

from selm.bench.measure import StepClock, median
from selm.bench.systems import SystemSpec, run_system
from selm.bench.workloads import (
    TINY,
    build_model,
    make_pairs,
    make_rollouts,
    num_parameters,
    sequence_lengths,
)

TRL_MISSING = importlib.util.find_spec("trl") is None


def test_step_clock_times_each_optimizer_step_after_warmup():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    clock = StepClock()
    with clock.running():
        for pause in (0.03, 0.01, 0.02):
            time.sleep(pause)
            opt.step()
    opt.step()  # outside the clock: not recorded
    seconds = clock.step_seconds(warmup=1)
    assert len(seconds) == 2
    # Sleeps last at least as long as asked; a loaded machine may only add to that.
    assert 0.01 <= seconds[0] < 0.03 + 1.0 and 0.02 <= seconds[1] < 0.02 + 1.0
    with pytest.raises(RuntimeError, match="expected at least 4 optimizer steps, saw 3"):
        clock.step_seconds(warmup=3)
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5


@pytest.mark.parametrize("system,lora", [("selm", False), ("selm", True), ("naive", False), ("sft", False)])
def test_tiny_system_runs_and_reports(system, lora):
    result = run_system(SystemSpec(system, "tiny", lora=lora, warmup=1, steps=2))
    lengths = sequence_lengths(make_pairs(2, TINY.vocab_size))
    assert len(result.step_seconds) == 2 and all(s > 0 for s in result.step_seconds)
    assert result.tokens_per_step == sum(lengths)
    assert result.padded_tokens_per_step == 4 * max(lengths)
    assert result.parameters == num_parameters(build_model(TINY))
    if lora:
        assert 0 < result.trainable_parameters < result.parameters
    else:
        assert result.trainable_parameters == result.parameters
    assert result.peak_rss_bytes > 100 * 2**20
    row = result.to_dict()
    assert row["label"] == SystemSpec(system, "tiny", lora=lora).label
    assert row["tokens_per_second"] == pytest.approx(sum(lengths) / median(result.step_seconds))


def test_invalid_combinations_are_refused():
    with pytest.raises(ValueError, match="padding_free applies to the selm system only"):
        run_system(SystemSpec("sft", "tiny", padding_free=True))
    with pytest.raises(ValueError, match="trains every weight"):
        run_system(SystemSpec("naive", "tiny", lora=True))
    with pytest.raises(ValueError, match="unknown system"):
        run_system(SystemSpec("deepspeed", "tiny"))
    with pytest.raises(ValueError, match="unknown objective"):
        run_system(SystemSpec("selm", "tiny", objective="kto"))
    for spec in (SystemSpec("naive", "tiny", objective="grpo"), SystemSpec("selm", "tiny", objective="grpo", lora=True)):
        with pytest.raises(ValueError, match="selm and trl systems, full fine-tuning only"):
            run_system(spec)


def test_failed_child_becomes_a_failed_row():
    from selm.bench.worker import run_isolated

    result = run_isolated("train", SystemSpec("nope", "tiny"), timeout=120)
    assert result["status"] == "failed"
    assert "unknown system 'nope'" in result["error"]


@pytest.mark.slow
@pytest.mark.skipif(TRL_MISSING, reason="trl is not installed (pip install -e '.[bench]')")
def test_tiny_trl_system_trains_on_the_same_tokens():
    result = run_system(SystemSpec("trl", "tiny", warmup=1, steps=2))
    # run_system raises if TRL's tokenization of the text differs from selm's token ids.
    assert result.tokens_per_step == sum(sequence_lengths(make_pairs(2, TINY.vocab_size)))
    assert result.notes == {"optimizer": "AdamW", "fused_adamw": True, "activation_checkpointing": False}


# ----- GRPO rows: the update on fixed rollouts ------------------------------------------------------

def grpo_tokens() -> tuple[int, int]:
    rollouts = make_rollouts(2, 4, TINY.vocab_size)
    return (sum(len(r.prompt_ids) + len(r.response_ids) for r in rollouts),
            sum(len(r.response_ids) for r in rollouts))


def selm_advantages() -> dict[str, float]:
    """GRPO's group-scaled advantages of the bench's rollouts, from selm's estimator directly."""
    from selm.data.rollouts import response_mask
    from selm.objectives.advantages import AdvantageInputs, get_advantage_estimator

    rollouts = make_rollouts(2, 4, TINY.vocab_size)
    lengths = [len(r.response_ids) for r in rollouts]
    out = get_advantage_estimator("grpo")(AdvantageInputs(
        rewards=torch.tensor([r.reward for r in rollouts]), group_ids=torch.tensor([r.group for r in rollouts]),
        response_mask=response_mask(lengths, max(lengths))))
    return {f"{r.group}/{i % 4}": float(a) for i, (r, a) in enumerate(zip(rollouts, out.advantages[:, 0]))}


def test_rollouts_are_groups_of_skewed_responses_with_a_reward_spread():
    rollouts = make_rollouts(2, 4, vocab_size=1000)
    assert rollouts == make_rollouts(2, 4, vocab_size=1000)
    assert [r.group for r in rollouts] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [r.index for r in rollouts] == list(range(8))
    for group in (rollouts[:4], rollouts[4:]):
        assert len({tuple(r.prompt_ids) for r in group}) == 1 and len({r.reward for r in group}) == 4
    lengths = sorted(len(r.response_ids) for r in rollouts)
    assert lengths[-1] > 5 * lengths[0]  # the longest response dominates a padded batch
    assert all(r.response_ids[-1] == 2 and r.prompt_ids[0] == 1 for r in rollouts)


def test_tiny_selm_grpo_runs_one_step_and_charges_the_round_start():
    result = run_system(SystemSpec("selm", "tiny", objective="grpo", padding_free=True, warmup=0, steps=1))
    tokens, response_tokens = grpo_tokens()
    assert result.spec.label == "selm+grpo+padding-free"
    assert result.tokens_per_step == tokens and result.notes["response_tokens_per_step"] == response_tokens
    assert result.trainable_parameters == result.parameters
    notes = result.notes
    assert notes["packed"] and notes["round_start_seconds"] > 0 and len(notes["update_seconds"]) == 1
    # A step is the optimizer-step interval plus the warm re-run of the round's scoring.
    assert result.step_seconds[0] == pytest.approx(notes["update_seconds"][0] + notes["round_start_seconds"])
    expected = selm_advantages()
    assert notes["advantages"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.skipif(TRL_MISSING, reason="trl is not installed (pip install -e '.[bench]')")
def test_tiny_trl_grpo_runs_one_step_on_the_same_rollouts():
    result = run_system(SystemSpec("trl", "tiny", objective="grpo", warmup=0, steps=1))
    tokens, response_tokens = grpo_tokens()
    # run_system raises if TRL scored other tokens than selm's rollouts.
    assert result.spec.label == "trl+grpo" and result.tokens_per_step == tokens
    assert result.notes["response_tokens_per_step"] == response_tokens
    notes = result.notes
    assert notes["optimizer"] == "AdamW" and notes["fused_adamw"] and not notes["activation_checkpointing"]
    assert notes["reference_model"]  # β > 0: TRL built its reference and ran it inside the step
    assert len(notes["scoring_seconds"]) == 1 and 0 < notes["update_seconds"][0] < result.step_seconds[0]
    # Same rewards and groups: TRL's advantages are selm's (TRL's float32 Bessel factor: ~1e-7).
    assert notes["advantages"] == pytest.approx(selm_advantages(), rel=1e-5, abs=1e-6)
