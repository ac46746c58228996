"""``vector`` judge: one reward per member judge, its mean as the scalar score, and the check that a
multi-objective objective gets one."""

from __future__ import annotations

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import VectorJudge, build_judge, require_vector_judge

SOURCE = """
def length(prompt, response):
    return float(len(response))

def vowels(prompt, response):
    return 10.0 * sum(c in "aeiou" for c in response)

def nan_on_b(prompt, response):
    return float("nan") if response == "b" else 0.0

def prefer_a(prompt, a, b):
    return 1.0
"""


def vector(mod: str, *names: str) -> VectorJudge:
    return build_judge({"kind": "vector", "judges": [{"kind": "function", "callable": f"{mod}:{n}"} for n in names]})


def test_reward_vectors_are_the_members_scores_in_order(user_module):
    mod = user_module(SOURCE)
    judge = vector(mod, "length", "vowels")
    assert judge.num_objectives == 2 and judge.is_vector
    prompts, candidates = ["p", "q"], [["xyz", "a"], ["aei"]]
    # length = 3, 1 | 3; vowels = 0, 10 | 30
    assert judge.reward_vectors_batch(prompts, candidates) == [[[3.0, 0.0], [1.0, 10.0]], [[3.0, 30.0]]]
    # the scalar summary is the members' mean
    assert judge.rank_scores_batch(prompts, candidates) == [[1.5, 5.5], [16.5]]
    assert judge.score(["p", "p"], ["xyz", "aei"]) == [1.5, 16.5]
    assert judge.reward_vectors_batch(["p"], [[]]) == [[]]


def test_member_errors_name_the_member(user_module):
    mod = user_module(SOURCE)
    with pytest.raises(JudgeError, match=r"^judge function '.*:nan_on_b': item 1: score is nan$"):
        vector(mod, "length", "nan_on_b").reward_vectors_batch(["p"], [["a", "b"]])
    with pytest.raises(JudgeError, match=r"inputs of different lengths \(1 prompts, 2 candidates\)"):
        vector(mod, "length").reward_vectors_batch(["p"], [["a"], ["b"]])


def test_spec_errors_name_the_key(user_module):
    mod = user_module(SOURCE)
    with pytest.raises(ConfigError, match=r"^judge 'vector': judges\[1\]: pairwise '.*:prefer_a' is pairwise; "
                                          r"each objective needs a pointwise reward$"):
        build_judge({"kind": "vector", "judges": [{"kind": "function", "callable": f"{mod}:length"},
                                                  {"kind": "pairwise", "callable": f"{mod}:prefer_a"}]})
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "vector", "judges": [{"kind": "function", "callable": f"{mod}:length", "x": 1}]})
    assert str(err.value) == "judge 'vector': judges[0]: judge 'function': x: unknown key"
    with pytest.raises(ConfigError, match=r"^judge 'vector': judges: "):
        build_judge({"kind": "vector", "judges": []})


def test_multi_objective_methods_refuse_a_scalar_judge(user_module):
    mod = user_module(SOURCE)
    require_vector_judge(vector(mod, "length", "vowels"), "pama")
    with pytest.raises(ConfigError) as err:
        require_vector_judge(build_judge({"kind": "gold", "task": "sort"}), "pama")
    assert str(err.value) == ("objective 'pama' needs a judge that returns a vector of rewards (kind: vector), "
                              "got 'gold'")
    with pytest.raises(ConfigError, match=r"got 'ensemble'$"):
        require_vector_judge(build_judge({"kind": "ensemble", "judges": [
            {"kind": "function", "callable": f"{mod}:length"}]}), "pama")
