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
    num_parameters,
    sequence_lengths,
)


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


def test_failed_child_becomes_a_failed_row():
    from selm.bench.worker import run_isolated

    result = run_isolated("train", SystemSpec("nope", "tiny"), timeout=120)
    assert result["status"] == "failed"
    assert "unknown system 'nope'" in result["error"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed (pip install -e '.[bench]')")
def test_tiny_trl_system_trains_on_the_same_tokens():
    result = run_system(SystemSpec("trl", "tiny", warmup=1, steps=2))
    # run_system raises if TRL's tokenization of the text differs from selm's token ids.
    assert result.tokens_per_step == sum(sequence_lengths(make_pairs(2, TINY.vocab_size)))
    assert result.notes == {"optimizer": "AdamW", "fused_adamw": True, "activation_checkpointing": False}
