import math

import pytest

from selm.eval import distinct_n, kl_estimate, mean_std, win_rate


def test_win_rate_counts_ties_as_half():
    assert win_rate([1.0, 0.5, 0.2, 0.7], [0.5, 0.5, 0.3, 0.1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_win_rate_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        win_rate([1.0], [1.0, 2.0])


def test_kl_estimate_is_mean_log_ratio():
    assert kl_estimate([-1.0, -2.0, -4.0], [-2.0, -2.5, -3.0]) == pytest.approx((1.0 + 0.5 - 1.0) / 3)


def test_distinct_2_by_hand():
    # bigrams: (1,2) (2,1) (1,2) | (3,3) -> 3 unique of 4
    assert distinct_n([[1, 2, 1, 2], [3, 3]], 2) == pytest.approx(3 / 4)
    assert distinct_n([[1]], 2) == 0.0


def test_mean_std_population():
    mean, std = mean_std([1.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    assert all(math.isnan(v) for v in mean_std([]))
