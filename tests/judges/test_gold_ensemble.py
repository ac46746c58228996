"""``gold`` registry and ``ensemble`` (mean − k·std)."""

from __future__ import annotations

import math

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import build_judge, gold, gold_rewards, register_gold_reward

ENSEMBLE_SOURCE = """
def length(prompt, response):
    return float(len(response))

def vowels(prompt, response):
    return 10.0 * sum(c in "aeiou" for c in response)

def prefer_a(prompt, a, b):
    return 1.0
"""


@pytest.fixture
def empty_gold_registry(monkeypatch):
    monkeypatch.setattr(gold, "_GOLD_REWARDS", {})


def exact_match(prompts, responses):
    return [1.0 if r == p[::-1] else 0.0 for p, r in zip(prompts, responses)]


def test_gold_registry_lookup(empty_gold_registry):
    register_gold_reward("reverse", exact_match)
    assert gold_rewards() == ["reverse"]
    judge = build_judge({"kind": "gold", "task": "reverse"})
    assert judge.name == "gold 'reverse'"
    assert judge.score(["abc", "abc"], ["cba", "abc"]) == [1.0, 0.0]


def test_gold_registration_replaces(empty_gold_registry):
    register_gold_reward("t", exact_match)
    register_gold_reward("t", lambda prompts, responses: [0.25] * len(responses))
    assert build_judge({"kind": "gold", "task": "t"}).score(["a"], ["a"]) == [0.25]


def test_gold_unknown_task_lists_registered(empty_gold_registry):
    register_gold_reward("sort", exact_match)
    register_gold_reward("reverse", exact_match)
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "gold", "task": "add"})
    assert str(err.value) == "judge 'gold': task: no gold reward registered for 'add'; registered: reverse, sort"


def test_gold_nothing_registered(empty_gold_registry):
    with pytest.raises(ConfigError, match=r"registered: none"):
        build_judge({"kind": "gold", "task": "sort"})


def test_gold_bad_output_is_caught(empty_gold_registry):
    register_gold_reward("bad", lambda prompts, responses: [0.0, math.nan])
    with pytest.raises(JudgeError, match=r"judge gold 'bad': item 1: score is nan"):
        build_judge({"kind": "gold", "task": "bad"}).score(["a", "b"], ["a", "b"])


def ensemble(mod: str, **options):
    return build_judge({"kind": "ensemble", "judges": [
        {"kind": "function", "callable": f"{mod}:length"},
        {"kind": "function", "callable": f"{mod}:vowels"},
    ], **options})


def test_ensemble_mean_minus_k_std(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    responses = ["xyz", "a", "aei"]
    # length = [3, 1, 3]; vowels = [0, 10, 30]
    # item 0: mean 1.5, std 1.5 -> 1.5 - 2*1.5 = -1.5
    # item 1: mean 5.5, std 4.5 -> 5.5 - 9 = -3.5
    # item 2: mean 16.5, std 13.5 -> 16.5 - 27 = -10.5
    assert ensemble(mod, k=2.0).score(["p"] * 3, responses) == [-1.5, -3.5, -10.5]
    assert ensemble(mod).score(["p"] * 3, responses) == [1.5, 5.5, 16.5]


def test_ensemble_normalized(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    # length = [2, 2, 4, 4] -> z = [-1, -1, 1, 1];  vowels = [0, 20, 0, 20] -> z = [-1, 1, -1, 1]
    # per item (mean, std) = (-1, 0), (0, 1), (0, 1), (1, 0) -> mean - 0.5*std
    responses = ["xy", "ae", "wxyz", "aexy"]
    assert ensemble(mod, k=0.5, normalize=True).score(["p"] * 4, responses) == [-1.0, -0.5, -0.5, 1.0]


def test_ensemble_constant_member_has_zero_zscores(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    # length is 2 for both -> z = [0, 0]; vowels [10, 20] -> z = [-1, 1]; mean = [-0.5, 0.5]
    assert ensemble(mod, normalize=True).score(["p", "p"], ["ab", "ae"]) == [-0.5, 0.5]


def test_ensemble_rejects_pairwise_members_and_names_bad_member(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    with pytest.raises(ConfigError, match=r"judges\[1\]: pairwise '.*:prefer_a' is pairwise"):
        build_judge({"kind": "ensemble", "judges": [{"kind": "function", "callable": f"{mod}:length"},
                                                    {"kind": "pairwise", "callable": f"{mod}:prefer_a"}]})
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "ensemble", "judges": [{"kind": "function", "callable": f"{mod}:length", "x": 1}]})
    assert str(err.value) == "judge 'ensemble': judges[0]: judge 'function': x: unknown key"
    with pytest.raises(ConfigError, match=r"judge 'ensemble': judges: "):
        build_judge({"kind": "ensemble", "judges": []})
