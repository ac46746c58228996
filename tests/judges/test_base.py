"""The judge contract: output validation, rank_scores for both kinds, and build_judge errors."""

from __future__ import annotations

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import Judge, available_judge_kinds, build_judge

SOURCE = """
import math

def length(prompt, response):
    return float(len(response))

def nan_at_2(prompt, response):
    return math.nan if response == "c" else 1.0

def inf_at_1(prompt, response):
    return math.inf if response == "b" else 1.0

def text_at_0(prompt, response):
    return "0.5"

def none_at_1(prompt, response):
    return None if response == "b" else 1.0

def short_batch(prompts, responses):
    return [1.0] * (len(responses) - 1)

def not_a_list(prompts, responses):
    return 3.0

def numpy_batch(prompts, responses):
    import numpy as np
    return np.arange(len(responses), dtype=np.float32)

def prob_longer(prompt, a, b):
    return 1.0 if len(a) > len(b) else 0.0 if len(a) < len(b) else 0.5

def first_slot(prompt, a, b):
    return 1.0

def prob_out_of_range(prompt, a, b):
    return 1.5
"""


@pytest.fixture
def mod(user_module) -> str:
    return user_module(SOURCE)


def fn(mod: str, name: str, **options) -> Judge:
    return build_judge({"kind": "function", "callable": f"{mod}:{name}", **options})


def pw(mod: str, name: str, **options) -> Judge:
    return build_judge({"kind": "pairwise", "callable": f"{mod}:{name}", **options})


def test_kinds_registered():
    assert available_judge_kinds() == ["ensemble", "function", "gold", "llm", "pairwise", "reward_model", "vector"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("nan_at_2", "judge function '{mod}:nan_at_2': item 2: score is nan"),
        ("inf_at_1", "judge function '{mod}:inf_at_1': item 1: score is inf"),
        ("text_at_0", "judge function '{mod}:text_at_0': item 0: score '0.5' is not a number"),
        ("none_at_1", "judge function '{mod}:none_at_1': item 1: score None is not a number"),
    ],
)
def test_bad_scores_name_the_item(mod, name, message):
    judge = fn(mod, name)
    with pytest.raises(JudgeError) as err:
        judge.score(["p"] * 3, ["a", "b", "c"])
    assert str(err.value) == message.format(mod=mod)


def test_wrong_count_and_non_list_are_errors(mod):
    with pytest.raises(JudgeError, match=r"returned 2 scores for 3 items"):
        fn(mod, "short_batch", batched=True).score(["p"] * 3, ["a", "b", "c"])
    with pytest.raises(JudgeError, match=r"expected a list of 2 scores, got float"):
        fn(mod, "not_a_list", batched=True).score(["p"] * 2, ["a", "b"])


def test_arrays_are_accepted_as_lists(mod):
    assert fn(mod, "numpy_batch", batched=True).score(["p"] * 3, ["a", "b", "c"]) == [0.0, 1.0, 2.0]


def test_mismatched_inputs_are_an_error(mod):
    with pytest.raises(JudgeError, match=r"inputs of different lengths \(2 prompts, 1 responses\)"):
        fn(mod, "length").score(["p", "q"], ["a"])


def test_rank_scores_pointwise_is_the_scores(mod):
    judge = fn(mod, "length")
    assert judge.rank_scores("p", ["a", "abc", "ab"]) == [1.0, 3.0, 2.0]
    assert judge.rank_scores_batch(["p", "q"], [["a", "abcd"], ["abc"]]) == [[1.0, 4.0], [3.0]]
    assert judge.rank_scores_batch([], []) == []


def test_rank_scores_errors_name_prompt_and_candidate(mod):
    with pytest.raises(JudgeError, match=r"prompt 1, candidate 0: score is nan"):
        fn(mod, "nan_at_2").rank_scores_batch(["p", "q"], [["a", "b"], ["c", "a"]])


def test_pointwise_compare_is_the_win_indicator(mod):
    judge = fn(mod, "length")
    assert judge.compare(["p"] * 3, ["aa", "a", "ab"], ["a", "aa", "cd"]) == [1.0, 0.0, 0.5]


def test_pairwise_round_robin_counts_expected_wins(mod):
    judge = pw(mod, "prob_longer")
    # Longest wins every comparison: expected wins out of K-1 = 2.
    assert judge.rank_scores("p", ["ab", "abc", "a"]) == [1.0, 2.0, 0.0]
    # An exact tie splits the win.
    assert judge.rank_scores("p", ["ab", "cd", "a"]) == [1.5, 1.5, 0.0]


def test_round_robin_cancels_position_bias(mod):
    # A judge that always prefers the first slot: every ordered pair is asked, so nobody wins.
    assert pw(mod, "first_slot").rank_scores("p", ["x", "y", "z"]) == [1.0, 1.0, 1.0]
    assert pw(mod, "first_slot", both_orders=True).compare(["p"], ["x"], ["y"]) == [0.5]


def test_pairwise_has_no_pointwise_score(mod):
    with pytest.raises(JudgeError, match=r"is pairwise and has no pointwise score"):
        pw(mod, "prob_longer").score(["p"], ["a"])


def test_probability_outside_unit_interval(mod):
    with pytest.raises(JudgeError, match=r"prompt 0, candidates 0 vs 1: probability 1.5 is outside \[0, 1\]"):
        pw(mod, "prob_out_of_range").rank_scores("p", ["a", "b"])


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"kind": "function", "callable": "math:sqrt", "bached": True}, "judge 'function': bached: unknown key"),
        ({"kind": "function"}, "judge 'function': callable: required key is missing"),
        ({"kind": "nope"}, "judge: unknown kind 'nope'; available: ensemble, function, gold, llm, pairwise, reward_model, vector"),
        ({"callable": "math:sqrt"}, "judge: required key 'kind' is missing; available: "
                                    "ensemble, function, gold, llm, pairwise, reward_model, vector"),
        ({"kind": "pairwise"}, "judge 'pairwise': set exactly one of 'callable' (a Python function) "
                               "or 'model' (a PairRM checkpoint)"),
    ],
)
def test_build_judge_config_errors(spec, message):
    with pytest.raises(ConfigError) as err:
        build_judge(spec)
    assert str(err.value) == message


def test_config_and_repr(mod):
    judge = fn(mod, "length")
    assert judge.config() == {"kind": "function", "callable": f"{mod}:length", "batched": False}
    assert repr(judge) == f"FunctionJudge(callable='{mod}:length', batched=False)"
