"""Pair construction: strategies, ties, margins, dedupe, length penalty, determinism, stats."""

from __future__ import annotations

import math

import pytest

from selm.errors import ConfigError, DataError
from selm.loop.pair_rules import Pair, build_pairs, split_by_score_gap

CANDS = [["a", "b", "c", "d"], ["w", "x", "y"]]
SCORES = [[0.2, 0.9, -0.5, 0.4], [1.0, 3.0, 2.0]]


def triples(pairs: list[Pair]) -> list[tuple[int, int, int]]:
    return [(p.prompt_index, p.chosen_index, p.rejected_index) for p in pairs]


def test_best_worst():
    pairs, stats = build_pairs(["p0", "p1"], CANDS, SCORES)
    assert pairs == [
        Pair(0, "p0", 1, 2, "b", "c", 0.9, -0.5, pytest.approx(1.4)),
        Pair(1, "p1", 1, 0, "x", "w", 3.0, 1.0, 2.0),
    ]
    assert stats.as_metrics() == {
        "pairs/count": 2, "pairs/prompts": 2, "pairs/prompts_without_pair": 0,
        "pairs/prompts_too_few_candidates": 0, "pairs/duplicates_removed": 0, "pairs/ties_dropped": 0,
        "pairs/below_margin_dropped": 0, "pairs/tie_rate": 0.0,
        "pairs/margin_mean": pytest.approx(1.7), "pairs/margin_min": pytest.approx(1.4), "pairs/margin_max": 2.0,
    }


def test_best_second():
    pairs, _ = build_pairs([0, 1], CANDS, SCORES, strategy="best_second")
    assert triples(pairs) == [(0, 1, 3), (1, 1, 2)]
    assert [p.margin for p in pairs] == [pytest.approx(0.5), 1.0]


def test_all_pairs():
    pairs, stats = build_pairs([0, 1], CANDS, SCORES, strategy="all_pairs")
    assert triples(pairs) == [
        (0, 1, 0), (0, 0, 2), (0, 3, 0), (0, 1, 2), (0, 1, 3), (0, 3, 2),
        (1, 1, 0), (1, 2, 0), (1, 1, 2),
    ]
    # margins: 0.7, 0.7, 0.2, 1.4, 0.5, 0.9 and 2.0, 1.0, 1.0
    assert stats.pairs == 9 and stats.margin_min == pytest.approx(0.2) and stats.margin_max == 2.0
    assert stats.margin_mean == pytest.approx(8.4 / 9)


def test_best_random_is_seeded_and_never_picks_the_best():
    keys = list(range(20))
    cands = [["a", "b", "c", "d"]] * 20
    scores = [[0.0, 5.0, 1.0, 2.0]] * 20
    first, _ = build_pairs(keys, cands, scores, strategy="best_random", seed=7)
    again, _ = build_pairs(keys, cands, scores, strategy="best_random", seed=7)
    other, _ = build_pairs(keys, cands, scores, strategy="best_random", seed=8)
    assert first == again
    assert {p.chosen_index for p in first} == {1}
    assert {p.rejected_index for p in first} == {0, 2, 3}  # every other candidate is drawn at some prompt
    assert [p.rejected_index for p in first] != [p.rejected_index for p in other]
    # A prompt's draw depends on its key and the seed, not on the other prompts.
    alone, _ = build_pairs([13], cands[:1], scores[:1], strategy="best_random", seed=7)
    assert alone[0].rejected_index == first[13].rejected_index


def test_ties_are_dropped_and_counted():
    cands = [["a", "b"], ["c", "d", "e"], ["f", "g"]]
    scores = [[1.0, 1.0], [0.5, 0.5, 0.5], [2.0, 1.0]]
    pairs, stats = build_pairs([0, 1, 2], cands, scores)
    assert triples(pairs) == [(2, 0, 1)]
    assert stats.ties_dropped == 2 and stats.prompts_without_pair == 2
    assert stats.as_metrics()["pairs/tie_rate"] == pytest.approx(2 / 3)
    # best_second with a tie at the top is a tie too (no "first wins").
    pairs, stats = build_pairs([0], [["a", "b", "c"]], [[3.0, 3.0, 1.0]], strategy="best_second")
    assert pairs == [] and stats.ties_dropped == 1
    # all_pairs drops only the tied pair.
    pairs, stats = build_pairs([0], [["a", "b", "c"]], [[3.0, 3.0, 1.0]], strategy="all_pairs")
    assert triples(pairs) == [(0, 0, 2), (0, 1, 2)] and stats.ties_dropped == 1


def test_min_margin():
    cands = [["a", "b"], ["c", "d"], ["e", "f"]]
    scores = [[1.0, 1.3], [0.0, 0.5], [0.0, 0.49]]
    pairs, stats = build_pairs(["x", "y", "z"], cands, scores, min_margin=0.5)
    assert triples(pairs) == [(1, 1, 0)]
    assert stats.below_margin_dropped == 2 and stats.ties_dropped == 0 and stats.prompts_without_pair == 2
    assert stats.as_metrics()["pairs/tie_rate"] == 0.0


def test_duplicates_removed_before_pairing():
    # "a" appears three times; only the first (score 0.1) counts, so the later 0.9 copy cannot win.
    cands = [["a", "b", "a", "a"], ["same", "same"]]
    scores = [[0.1, 0.5, 0.9, 0.0], [1.0, 2.0]]
    pairs, stats = build_pairs([0, 1], cands, scores)
    assert pairs == [Pair(0, 0, 1, 0, "b", "a", 0.5, 0.1, 0.4)]
    assert stats.duplicates_removed == 3
    assert stats.prompts_too_few_candidates == 1 and stats.prompts_without_pair == 1


def test_length_penalty_changes_the_winner():
    cands = [["short", "a much longer response"]]
    scores = [[1.0, 1.5]]
    lengths = [[2, 10]]
    plain, _ = build_pairs([0], cands, scores, lengths=lengths)
    assert (plain[0].chosen_index, plain[0].rejected_index) == (1, 0)
    penalised, _ = build_pairs([0], cands, scores, length_penalty=0.1, lengths=lengths)
    # 1.0 − 0.2 = 0.8 beats 1.5 − 1.0 = 0.5
    assert (penalised[0].chosen_index, penalised[0].rejected_index) == (0, 1)
    assert penalised[0].chosen_score == pytest.approx(0.8)
    assert penalised[0].rejected_score == pytest.approx(0.5)
    assert penalised[0].margin == pytest.approx(0.3)


def test_no_candidates_and_empty_input():
    pairs, stats = build_pairs([0, 1], [[], ["only"]], [[], [1.0]])
    assert pairs == [] and stats.prompts_too_few_candidates == 2 and stats.prompts_without_pair == 2
    metrics = stats.as_metrics()
    assert metrics["pairs/tie_rate"] is None and metrics["pairs/margin_mean"] is None
    assert build_pairs([], [], [])[1].prompts == 0


def test_deterministic_given_seed():
    args = ([0, 1], CANDS, SCORES)
    for strategy in ("best_worst", "best_random", "best_second", "all_pairs"):
        assert build_pairs(*args, strategy=strategy, seed=3) == build_pairs(*args, strategy=strategy, seed=3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"strategy": "best_of"}, ConfigError, "pairs.strategy: unknown strategy 'best_of'; use one of "
                                               "best_worst, best_random, best_second, all_pairs"),
        ({"min_margin": -1.0}, ConfigError, "pairs.min_margin must be >= 0, got -1.0"),
        ({"length_penalty": -0.1}, ConfigError, "pairs.length_penalty must be >= 0, got -0.1"),
        ({"length_penalty": 0.1}, ValueError, "length_penalty > 0 needs the candidates' lengths"),
        ({"scores": [[1.0], [1.0, 2.0, 3.0]]}, DataError, "pairs: prompt 0 has 2 candidates but 1 scores"),
        ({"scores": [[1.0, math.nan], [1.0, 2.0, 3.0]]}, DataError,
         "pairs: prompt 0, candidate 1: score nan is not a finite number"),
        ({"scores": [[1.0, "2"], [1.0, 2.0, 3.0]]}, DataError,
         "pairs: prompt 0, candidate 1: score '2' is not a finite number"),
        ({"lengths": [[1, 2], [1, 2]]}, DataError, "pairs: prompt 1 has 3 candidates but 2 lengths"),
        ({"keys": [0]}, DataError, "pairs: 1 prompt keys, 2 candidate lists and 2 score lists; they must match"),
    ],
)
def test_invalid_inputs(kwargs, error, message):
    args = {"keys": [0, 1], "candidates": [["a", "b"], ["c", "d", "e"]], "scores": [[1.0, 2.0], [1.0, 2.0, 3.0]]}
    args.update(kwargs)
    keys, candidates, scores = args.pop("keys"), args.pop("candidates"), args.pop("scores")
    with pytest.raises(error) as err:
        build_pairs(keys, candidates, scores, **args)
    assert str(err.value) == message


# ----- MPO: easy / difficult split by score gap ---------------------------------------------------

GAPS = [0.5, 2.0, 1.0, 3.0, 1.0]  # sorted: 0.5, 1.0, 1.0, 2.0, 3.0


@pytest.mark.parametrize(
    "quantile, easy, difficult",
    [
        (0.5, [1, 3], [0, 2, 4]),       # h = 4·0.5 = 2: τ = 1.0; both gaps equal to τ are difficult
        (0.25, [1, 3], [0, 2, 4]),      # h = 1: τ = 1.0
        (0.1, [1, 2, 3, 4], [0]),       # h = 0.4: τ = 0.5 + 0.4·(1.0 − 0.5) = 0.7
        (0.875, [3], [0, 1, 2, 4]),     # h = 3.5: τ = 2.0 + 0.5·(3.0 − 2.0) = 2.5
        (0.0, [1, 2, 3, 4], [0]),       # τ = the smallest gap
        (1.0, [], [0, 1, 2, 3, 4]),     # τ = the largest gap: everything is difficult
    ],
)
def test_split_by_score_gap(quantile, easy, difficult):
    assert split_by_score_gap(GAPS, quantile) == (easy, difficult)


def test_split_by_score_gap_negative_gaps_are_difficult_and_empty_input():
    # sorted: −1.0, 0.2, 0.4, 5.0; h = 1.5: τ = 0.2 + 0.5·(0.4 − 0.2) = 0.3
    assert split_by_score_gap([-1.0, 0.4, 5.0, 0.2], 0.5) == ([1, 2], [0, 3])
    assert split_by_score_gap([], 0.3) == ([], [])
    assert split_by_score_gap([0.7, 0.7, 0.7], 0.5) == ([], [0, 1, 2])  # one gap value: one set


@pytest.mark.parametrize(
    "gaps, quantile, error, message",
    [
        ([1.0, 2.0], 1.5, ConfigError, "pairs.gap_quantile must be in [0, 1], got 1.5"),
        ([1.0, 2.0], -0.1, ConfigError, "pairs.gap_quantile must be in [0, 1], got -0.1"),
        ([1.0, math.inf], 0.5, DataError, "pairs: pair 1: score gap inf is not a finite number"),
    ],
)
def test_split_by_score_gap_invalid(gaps, quantile, error, message):
    with pytest.raises(error) as err:
        split_by_score_gap(gaps, quantile)
    assert str(err.value) == message
