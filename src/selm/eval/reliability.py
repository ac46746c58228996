"""How well a judge's rewards predict the gold score: PF-PPO's R² (Zhang et al., ICML 2025,
arXiv 2409.06957 §4, Table 1).

The paper groups responses with similar rewards, takes the mean reward and the mean actual score of
each group, fits a line ``score ≈ a + b·reward`` with each group as one point, and reports
``R² = 1 − Σ(s − ŝ)² / Σ(s − s̄)²``. Computed on the responses a rollout filter keeps, it predicts
which filter trains best (SFT policy: no filter 0.886, best-of-N 0.454, best-random 0.922,
best-worst 0.952), before any RL is run.

The paper does not say how the groups are formed. Here the responses are sorted by judge reward
(ties by position) and cut into ``bins`` groups of equal size, the first ``n mod bins`` one larger:
equal counts give every point the same number of responses, so no near-empty group's noisy mean
weighs as much as a full one in the unweighted fit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from selm.errors import DataError
from selm.eval.keys import RELIABILITY_BINS, RELIABILITY_R2, RELIABILITY_R2_RESPONSES, reliability_key


def reward_bins(judge_rewards: Sequence[float], gold_rewards: Sequence[float],
                bins: int) -> list[tuple[float, float]]:
    """The (mean judge reward, mean gold score) of each reward group, lowest rewards first.

    Args:
        judge_rewards: [n] the judge's reward per response, judge units; finite.
        gold_rewards: [n] the gold (actual) score of the same responses, gold units; finite.
        bins: groups wanted, ≥ 1; ``min(bins, n)`` groups are made.

    Returns:
        ``min(bins, n)`` points (the means of PF-PPO's Figure 1).

    Raises:
        DataError: sequences of different lengths or a non-finite value.
        ValueError: ``bins`` < 1.
    """
    if bins < 1:
        raise ValueError(f"reward_bins: bins must be >= 1, got {bins}")
    _check(judge_rewards, gold_rewards)
    n = len(judge_rewards)
    order = sorted(range(n), key=lambda i: (judge_rewards[i], i))
    count = min(bins, n)
    points, start = [], 0
    for b in range(count):
        size = n // count + (b < n % count)
        members = order[start:start + size]
        start += size
        points.append((math.fsum(judge_rewards[i] for i in members) / size,
                       math.fsum(gold_rewards[i] for i in members) / size))
    return points


def reward_reliability(judge_rewards: Sequence[float], gold_rewards: Sequence[float], bins: int = 10,
                       filter_name: str = "none") -> dict[str, float | None]:
    """PF-PPO's reliability of a judge against the gold score (see the module docstring).

    Args:
        judge_rewards: [n] the judge's reward per response, judge units; finite.
        gold_rewards: [n] the gold (actual) score of the same responses, gold units; finite.
        bins: reward groups the paper's R² is fitted through, ≥ 3 (a line through 2 points fits exactly).
        filter_name: the rollout filter that kept these responses (``none``: all sampled); names the keys.

    Returns:
        ``reliability/r2_<filter>``: R² of the line through the ``min(bins, n)`` group means (the
        paper's statistic); ``reliability/r2_responses_<filter>``: R² with every response a point;
        ``reliability/bins_<filter>``: the number of group means. Each R² is the squared Pearson
        correlation (OLS with an intercept); 0 when the judge's values are all equal (the best line
        is then flat at the mean score), None when the gold values are all equal (nothing to
        explain) or there are fewer than 3 points. Equality is exact: float sums of equal values
        need not cancel to exactly 0.

    Raises:
        DataError: sequences of different lengths or a non-finite value.
        ValueError: ``bins`` < 3.
    """
    if bins < 3:
        raise ValueError(f"reward_reliability: bins must be >= 3, got {bins}")
    points = reward_bins(judge_rewards, gold_rewards, bins)
    return {
        reliability_key(RELIABILITY_R2, filter_name): _r_squared(points),
        reliability_key(RELIABILITY_R2_RESPONSES, filter_name): _r_squared(list(zip(judge_rewards, gold_rewards))),
        reliability_key(RELIABILITY_BINS, filter_name): float(len(points)),
    }


def _r_squared(points: Sequence[tuple[float, float]]) -> float | None:
    """R² of the least-squares line y = a + b·x: S_xy² / (S_xx · S_yy)."""
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    if len(points) < 3 or all(y == ys[0] for y in ys):
        return None
    if all(x == xs[0] for x in xs):
        return 0.0
    x_mean, y_mean = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    sxx = math.fsum((x - x_mean) ** 2 for x in xs)
    syy = math.fsum((y - y_mean) ** 2 for y in ys)
    sxy = math.fsum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys))
    return sxy * sxy / (sxx * syy)


def _check(judge_rewards: Sequence[float], gold_rewards: Sequence[float]) -> None:
    if len(judge_rewards) != len(gold_rewards):
        raise DataError(f"reliability: {len(judge_rewards)} judge rewards but {len(gold_rewards)} gold rewards")
    for name, values in (("judge reward", judge_rewards), ("gold reward", gold_rewards)):
        for i, value in enumerate(values):
            if not (isinstance(value, numbers.Real) and math.isfinite(value)):
                raise DataError(f"reliability: response {i}: {name} {value!r} is not a finite number")
