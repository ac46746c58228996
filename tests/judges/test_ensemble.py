"""``ensemble`` with ``robust_lambda`` (reward-robust RLHF: λ·mean + (1−λ)·min over members) and
its per-member details, against values computed by hand (all exact in binary floating point)."""

from __future__ import annotations

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import EnsembleJudge, build_judge

SOURCE = """
def length(prompt, response):
    return float(len(response))

def vowels(prompt, response):
    return 10.0 * sum(c in "aeiou" for c in response)

def optimist(prompt, response):
    return {"A": 1.0, "B": 2.0}[response]

def pessimist(prompt, response):
    return {"A": 1.0, "B": 0.5}[response]
"""


def ensemble(mod: str, first: str = "length", second: str = "vowels", **options) -> EnsembleJudge:
    return build_judge({"kind": "ensemble", "judges": [
        {"kind": "function", "callable": f"{mod}:{first}"},
        {"kind": "function", "callable": f"{mod}:{second}"},
    ], **options})


def test_robust_score_is_lambda_mean_plus_one_minus_lambda_min(user_module):
    mod = user_module(SOURCE)
    responses = ["xyz", "a", "aei"]
    # length = [3, 1, 3]; vowels = [0, 10, 30]; per item (mean, min) = (1.5, 0), (5.5, 1), (16.5, 3)
    # λ = 0.25: 0.25·1.5 + 0.75·0 = 0.375; 0.25·5.5 + 0.75·1 = 2.125; 0.25·16.5 + 0.75·3 = 6.375
    assert ensemble(mod, robust_lambda=0.25).score(["p"] * 3, responses) == [0.375, 2.125, 6.375]
    assert ensemble(mod, robust_lambda=1.0).score(["p"] * 3, responses) == [1.5, 5.5, 16.5]
    assert ensemble(mod, robust_lambda=0.0).score(["p"] * 3, responses) == [0.0, 1.0, 3.0]


def test_robust_score_after_normalisation(user_module):
    mod = user_module(SOURCE)
    # z(length) = [-1, -1, 1, 1]; z(vowels) = [-1, 1, -1, 1]; per item (mean, min) =
    # (-1, -1), (0, -1), (0, -1), (1, 1) -> λ = 0.5: -1, -0.5, -0.5, 1
    judge = ensemble(mod, robust_lambda=0.5, normalize=True)
    assert judge.score(["p"] * 4, ["xy", "ae", "wxyz", "aexy"]) == [-1.0, -0.5, -0.5, 1.0]


def test_member_scores_batch_gives_members_scores_and_spread_from_one_pass(user_module):
    mod = user_module(SOURCE)
    judge = ensemble(mod, robust_lambda=0.25)
    prompts, candidates = ["p", "q"], [["xyz", "a"], ["aei"]]
    details = judge.member_scores_batch(prompts, candidates)
    assert details.members == [[[3.0, 0.0], [1.0, 10.0]], [[3.0, 30.0]]]
    assert details.scores == [[0.375, 2.125], [6.375]] == judge.rank_scores_batch(prompts, candidates)
    # population std of two values is half their distance
    assert details.spread == [[1.5, 4.5], [13.5]]
    assert details.member_means() == [7 / 3, 40 / 3]
    # mean − k·std (the default combination) is reported the same way
    plain = ensemble(mod, k=2.0).member_scores_batch(prompts, candidates)
    assert plain.scores == [[-1.5, -3.5], [-10.5]]
    normalised = ensemble(mod, normalize=True).member_scores_batch(["p"], [["xy", "ae", "wxyz", "aexy"]])
    assert normalised.members == [[[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]]
    assert normalised.spread == [[0.0, 1.0, 1.0, 0.0]]
    assert judge.member_scores_batch(["p"], [[]]).members == [[]]
    with pytest.raises(JudgeError, match=r"inputs of different lengths \(2 prompts, 1 candidates\)"):
        judge.member_scores_batch(["p", "q"], [["a"]])


def test_optimum_moves_to_the_arm_the_members_agree_on_as_lambda_falls(user_module):
    mod = user_module(SOURCE)
    # Members agree on A (1, 1) and disagree on B (2, 0.5): score(B) = 1.25λ + 0.5(1 − λ) = 0.5 + 0.75λ,
    # above score(A) = 1 exactly when λ > 2/3.
    best = {}
    for lam in (1.0, 0.75, 0.5, 0.0):
        scores = ensemble(mod, "optimist", "pessimist", robust_lambda=lam).rank_scores("p", ["A", "B"])
        assert scores == [1.0, 0.5 + 0.75 * lam]
        best[lam] = "AB"[scores.index(max(scores))]
    assert best == {1.0: "B", 0.75: "B", 0.5: "A", 0.0: "A"}


def test_robust_lambda_is_checked(user_module):
    mod = user_module(SOURCE)
    with pytest.raises(ConfigError) as err:
        ensemble(mod, robust_lambda=1.5)
    assert str(err.value) == "judge 'ensemble': robust_lambda: Input should be less than or equal to 1 (got 1.5)"
    with pytest.raises(ConfigError) as err:
        ensemble(mod, k=1.0, robust_lambda=0.5)
    assert str(err.value) == ("judge 'ensemble': robust_lambda: cannot be combined with k=1.0 "
                              "(it replaces mean − k·std); set k to 0 (got 0.5)")
