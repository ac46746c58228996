"""Rollout rules: PF-PPO filtration, DAPO dynamic sampling and soft overlong punishment, by hand."""

from __future__ import annotations

import math
import random

import pytest

from selm.config import validate
from selm.errors import ConfigError, DataError
from selm.loop.rollout_rules import (
    FILTERS,
    DynamicSampling,
    RolloutRules,
    filter_group,
    filter_rollouts,
    informative_groups,
    overlong_penalty,
)

# Ranked by reward: position 1 (0.9), 3 (0.4), 0 (0.2), 4 (0.1), 2 (−0.5).
REWARDS = [0.2, 0.9, -0.5, 0.4, 0.1]


def test_best_of_n_best_worst_and_none():
    rng = random.Random(0)
    assert filter_group(REWARDS, "best_of_n", rng) == [1]
    assert filter_group(REWARDS, "best_worst", rng) == [1, 2]
    assert filter_group(REWARDS, "none", rng) == [0, 1, 2, 3, 4]
    # ALGORITHMS-2 §2: rewards [5, 4, 3, 2, 1], BW keeps {5, 1}.
    assert filter_group([5.0, 4.0, 3.0, 2.0, 1.0], "best_worst", rng) == [0, 4]


def test_ties_rank_by_position_so_best_and_worst_differ():
    rng = random.Random(0)
    # Ranking (−r, position): 1, 2, 0, 3, 4 → best is the first 3.0, worst the last 0.0.
    assert filter_group([1.0, 3.0, 3.0, 0.0, 0.0], "best_worst", rng) == [1, 4]
    assert filter_group([1.0, 3.0, 3.0, 0.0, 0.0], "best_of_n", rng) == [1]
    assert filter_group([2.0, 2.0, 2.0], "best_worst", rng) == [0, 2]
    assert filter_group([2.0, 2.0], "best_random", rng) == [0, 1]


def test_best_random_matches_the_papers_weights():
    # w_BR = (1/2, 1/(2(N−1)), …) for N = 5: each kept response has weight 1/2, so rank i's weight
    # is its keep frequency / 2. Over M draws each of the 4 others is picked ~ Binomial(M, 1/4).
    rewards = [5.0, 4.0, 3.0, 2.0, 1.0]
    m = 4000
    kept = filter_rollouts([rewards] * m, "best_random", seed=11)
    assert all(k[0] == 0 and len(k) == 2 for k in kept)
    counts = [sum(k[1] == rank for k in kept) for rank in range(1, 5)]
    sigma = math.sqrt(m * 0.25 * 0.75)  # 27.4
    assert all(abs(c - m / 4) < 5 * sigma for c in counts), counts
    weights = [0.5] + [c / m / 2 for c in counts]
    assert weights == pytest.approx([0.5, 0.125, 0.125, 0.125, 0.125], abs=5 * sigma / m / 2)


def test_filter_rollouts_is_seeded_per_prompt():
    groups = [REWARDS] * 30
    first = filter_rollouts(groups, "best_random", seed=3)
    assert first == filter_rollouts(groups, "best_random", seed=3)
    assert first != filter_rollouts(groups, "best_random", seed=4)
    assert {k[1] for k in first} | {k[0] for k in first} == {0, 1, 2, 3, 4}  # the best (1) and every other
    assert first == filter_rollouts(groups, "best_random", seed=3, prompt_keys=range(30))
    # A prompt's draw depends on its key and the seed, not on the other prompts.
    assert filter_rollouts([REWARDS], "best_random", seed=3, prompt_keys=[17]) == [first[17]]


def test_filter_rollouts_groups_of_any_size():
    groups = [[1.0, 2.0, 0.5], [], [7.0], [3.0, 3.0]]
    assert filter_rollouts(groups, "best_of_n", seed=0) == [[1], [], [0], [0]]
    assert filter_rollouts(groups, "none", seed=0) == [[0, 1, 2], [], [0], [0, 1]]
    assert filter_rollouts([[1.0, 2.0, 0.5], [], [3.0, 3.0]], "best_worst", seed=0) == [[1, 2], [], [0, 1]]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: filter_group([1.0, 2.0], "max_min", random.Random(0)), ConfigError,
         "rollouts.filter: unknown filter 'max_min'; use one of none, best_of_n, best_random, best_worst"),
        (lambda: filter_group([1.0], "best_random", random.Random(0)), DataError,
         "rollouts: the filter best_random needs at least 2 responses per prompt (sampling.n), got 1"),
        (lambda: filter_rollouts([[1.0, 2.0], [1.0]], "best_worst", 0), DataError,
         "rollouts: prompt 1: the filter best_worst needs at least 2 responses per prompt (sampling.n), got 1"),
        (lambda: filter_rollouts([[1.0, math.nan]], "none", 0), DataError,
         "rollouts: prompt 0: response 1: reward nan is not a finite number"),
        (lambda: filter_group([math.inf, 1.0], "best_of_n", random.Random(0)), DataError,
         "rollouts: response 0: reward inf is not a finite number"),
        (lambda: filter_rollouts([[1.0, 2.0]], "none", 0, prompt_keys=["a", "b"]), DataError,
         "rollouts: 2 prompt keys for 1 prompts"),
        (lambda: informative_groups([[1.0, 2.0], [1.0, "2"]]), DataError,
         "rollouts: prompt 1: response 1: reward '2' is not a finite number"),
    ],
)
def test_invalid_inputs(call, error, message):
    with pytest.raises(error) as err:
        call()
    assert str(err.value) == message


def test_informative_groups_use_exact_equality():
    groups = [
        [1.0, 1.0, 1.0],        # all correct: no gradient
        [1.0, 0.0, 1.0],
        [0.1, 0.1, 0.1],        # equal, though their float mean is not 0.1
        [2.0, 2.0000000000000004],  # one ulp apart: still a (tiny) signal
        [0.3],                  # nothing to compare: kept, as verl does
        [],
    ]
    assert informative_groups(groups) == [False, True, False, True, True, False]


def test_dynamic_sampling_plan():
    plan = DynamicSampling(target=10, max_rounds=2)
    assert not plan.needs_more(kept=10, rounds_done=0)
    assert plan.needs_more(kept=6, rounds_done=1)
    assert not plan.needs_more(kept=6, rounds_done=2)
    assert plan.next_draw(kept=0, drawn=10) == 10     # nothing kept: a full batch
    assert plan.next_draw(kept=6, drawn=10) == 7      # ceil(4 · 10/6) = ceil(6.67)
    assert plan.next_draw(kept=5, drawn=10) == 10     # ceil(5 · 10/5) = 10
    assert plan.next_draw(kept=2, drawn=10) == 10     # ceil(8 · 10/2) = 40, capped at the target
    assert plan.next_draw(kept=12, drawn=25) == 0
    assert not DynamicSampling(target=4, max_rounds=0).needs_more(kept=0, rounds_done=0)


def test_dynamic_sampling_fills_a_round():
    # Every other prompt is informative: 8 drawn → 4 kept; the plan draws ceil(4 · 8/4) = 8 more.
    plan = DynamicSampling(target=8, max_rounds=3)
    drawn, kept, rounds = 8, 4, 0
    while plan.needs_more(kept, rounds):
        extra = plan.next_draw(kept, drawn)
        drawn, kept, rounds = drawn + extra, kept + extra // 2, rounds + 1
    assert (drawn, kept, rounds) == (16, 8, 1)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: DynamicSampling(target=0, max_rounds=1), ConfigError,
         "prompts.per_round must be >= 1 for dynamic sampling, got 0"),
        (lambda: DynamicSampling(target=4, max_rounds=-1), ConfigError,
         "rollouts.max_resample_rounds must be >= 0, got -1"),
        (lambda: DynamicSampling(target=4, max_rounds=1).next_draw(kept=5, drawn=3), ValueError,
         "DynamicSampling.next_draw: need 0 <= kept <= drawn, got kept=5, drawn=3"),
    ],
)
def test_dynamic_sampling_errors(call, error, message):
    with pytest.raises(error) as err:
        call()
    assert str(err.value) == message


@pytest.mark.parametrize(
    "length, expected",
    [
        (0, 0.0),
        (16384, 0.0),              # L − C: the ramp starts after it
        (16385, -1 / 4096),
        (18432, -0.5),
        (20480, -1.0),             # L: the end of the ramp
        (20481, -1.0),             # beyond L
    ],
)
def test_overlong_penalty_dapo_setting(length, expected):
    # DAPO §4.1: L_max = 20480 tokens, L_cache = 4096; powers of two, so every value is exact.
    assert overlong_penalty(length, 20480, 4096) == expected


def test_overlong_penalty_small_and_scaled():
    assert [overlong_penalty(n, 10, 4) for n in range(5, 12)] == [0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0]
    assert overlong_penalty(9, 10, 4, factor=0.5) == -0.375
    assert overlong_penalty(11, 10, 4, factor=0.5) == -0.5
    assert overlong_penalty(0, 8, 8) == 0.0 and overlong_penalty(1, 8, 8) == -0.125  # C = L: ramp from the start


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((5, 10, 0), ConfigError, "rollouts.overlong_cache_length must be in [1, 10] (the response limit), got 0"),
        ((5, 10, 11), ConfigError, "rollouts.overlong_cache_length must be in [1, 10] (the response limit), got 11"),
        ((5, 10, 4, -1.0), ConfigError, "rollouts.overlong_penalty_factor must be >= 0, got -1.0"),
        ((-1, 10, 4), ValueError, "overlong_penalty: need length >= 0 and max_length >= 1, got -1 and 10"),
    ],
)
def test_overlong_penalty_errors(args, error, message):
    with pytest.raises(error) as err:
        overlong_penalty(*args)
    assert str(err.value) == message


def test_rollout_rules_config():
    rules = RolloutRules()
    assert (rules.filter, rules.dynamic_sampling, rules.max_resample_rounds) == ("none", False, 3)
    assert (rules.overlong_cache_length, rules.overlong_penalty_factor) == (0, 1.0)
    assert validate(RolloutRules, {"filter": "best_random", "dynamic_sampling": True}).filter == "best_random"
    assert all(field.description for field in RolloutRules.model_fields.values())
    assert FILTERS == ("none", "best_of_n", "best_random", "best_worst")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"filter": "max_min"}, "filter: Input should be 'none', 'best_of_n', 'best_random' or 'best_worst' "
                                "(got 'max_min')"),
        ({"max_resample_rounds": -1}, "max_resample_rounds: Input should be greater than or equal to 0 (got -1)"),
        ({"overlong_cache_length": -5}, "overlong_cache_length: Input should be greater than or equal to 0 (got -5)"),
        ({"overlong_buffer": 4}, "overlong_buffer: unknown key"),
    ],
)
def test_rollout_rules_config_errors(data, message):
    with pytest.raises(ConfigError) as err:
        validate(RolloutRules, data)
    assert str(err.value) == message
