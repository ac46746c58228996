"""PF-PPO's judge reliability R², against hand computations and numpy's float64 least squares."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from selm.errors import DataError
from selm.eval.reliability import reward_bins, reward_reliability

# Sorted by judge reward, bins of 2: {1, 2}, {3, 4}, {5, 6} → judge means 1.5, 3.5, 5.5 and gold
# means (0 + 0)/2 = 0, (0.5 + 1.5)/2 = 1, (2 + 4)/2 = 3.
JUDGE = [5.0, 1.0, 3.0, 2.0, 6.0, 4.0]
GOLD = [2.0, 0.0, 0.5, 0.0, 4.0, 1.5]


def numpy_r2(x: list[float], y: list[float]) -> float:
    """1 − SS_res/SS_tot of numpy's degree-1 least-squares fit, in float64."""
    x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    fitted = np.polyval(np.polyfit(x_arr, y_arr, 1), x_arr)
    return float(1 - np.sum((y_arr - fitted) ** 2) / np.sum((y_arr - y_arr.mean()) ** 2))


def test_bins_and_r2_by_hand():
    assert reward_bins(JUDGE, GOLD, bins=3) == [(1.5, 0.0), (3.5, 1.0), (5.5, 3.0)]
    metrics = reward_reliability(JUDGE, GOLD, bins=3)
    # x − x̄ = (−2, 0, 2), y − ȳ = (−4/3, −1/3, 5/3): S_xx = 8, S_xy = 6, S_yy = 14/3,
    # R² = 36 / (8 · 14/3) = 27/28. Float rounding of these few O(1) terms is ~1e-16.
    assert metrics["reliability/r2_none"] == pytest.approx(27 / 28, abs=1e-14)
    assert metrics["reliability/r2_responses_none"] == pytest.approx(numpy_r2(JUDGE, GOLD), abs=1e-12)
    assert metrics["reliability/bins_none"] == 3.0
    assert set(reward_reliability(JUDGE, GOLD, bins=3, filter_name="best_worst")) == {
        "reliability/r2_best_worst", "reliability/r2_responses_best_worst", "reliability/bins_best_worst"}


def test_unequal_bins_put_the_extra_responses_first():
    # n = 7, 3 bins: sizes 3, 2, 2 over the judge order 0..6 (ties of 2.0 stay in position order).
    judge = [0.0, 1.0, 2.0, 2.0, 4.0, 5.0, 6.0]
    gold = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0]
    assert reward_bins(judge, gold, bins=3) == [(1.0, 2.0), (3.0, 15.0), (5.5, 35.0)]
    assert reward_bins(judge, gold, bins=10) == list(zip(judge, gold))  # fewer responses than bins


def test_r2_is_one_on_linear_data_and_matches_numpy_on_noisy_data():
    judge = [0.1 * i for i in range(40)]
    linear = reward_reliability(judge, [3.0 - 2.0 * r for r in judge])
    assert linear["reliability/r2_none"] == pytest.approx(1.0, abs=1e-12)
    rng = random.Random(5)
    gold = [r + rng.gauss(0.0, 0.5) for r in judge]
    metrics = reward_reliability(judge, gold, bins=8)
    means = reward_bins(judge, gold, bins=8)
    # Two float64 routes (normal equations via fsum vs numpy's lstsq) over ≤ 40 values of size
    # O(1): they agree to ~1e-15; 1e-12 leaves room.
    assert metrics["reliability/r2_none"] == pytest.approx(numpy_r2(*map(list, zip(*means))), abs=1e-12)
    assert metrics["reliability/r2_responses_none"] == pytest.approx(numpy_r2(judge, gold), abs=1e-12)
    # Averaging within bins removes most of the per-response noise.
    assert metrics["reliability/r2_none"] > metrics["reliability/r2_responses_none"]


def test_degenerate_cases():
    constant_gold = reward_reliability([1.0, 2.0, 3.0, 4.0], [0.1, 0.1, 0.1, 0.1], bins=4)
    assert constant_gold["reliability/r2_none"] is None and constant_gold["reliability/r2_responses_none"] is None
    constant_judge = reward_reliability([0.7] * 4, [0.0, 1.0, 0.0, 1.0], bins=4)
    assert constant_judge["reliability/r2_none"] == 0.0
    too_few = reward_reliability([1.0, 2.0], [0.0, 1.0], bins=5)
    assert too_few == {"reliability/r2_none": None, "reliability/r2_responses_none": None,
                       "reliability/bins_none": 2.0}
    assert reward_reliability([], [])["reliability/bins_none"] == 0.0


@pytest.mark.parametrize(
    "args, error, message",
    [
        (([1.0, 2.0], [1.0]), DataError, "reliability: 2 judge rewards but 1 gold rewards"),
        (([1.0, math.nan], [1.0, 2.0]), DataError, "reliability: response 1: judge reward nan is not a finite number"),
        (([1.0, 2.0], [None, 2.0]), DataError, "reliability: response 0: gold reward None is not a finite number"),
        (([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 2), ValueError, "reward_reliability: bins must be >= 3, got 2"),
    ],
)
def test_invalid_inputs(args, error, message):
    with pytest.raises(error) as err:
        reward_reliability(*args)
    assert str(err.value) == message
