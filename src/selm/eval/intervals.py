"""Confidence intervals for a mean over a few seeds (Student's t), without scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def student_t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with ``df`` (integer ≥ 1) degrees of freedom.

    The closed-form finite series of Abramowitz & Stegun 26.7.3 (odd df) / 26.7.4 (even df),
    with θ = atan(t / √df): exact up to float rounding for every integer df.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        # (2/π)·[θ + sinθ·cosθ·(1 + (2/3)cos²θ + (2·4)/(3·5)cos⁴θ + … up to cos^(df−3)θ)]
        term, total = 1.0, 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total) if df > 1 else 2 * theta / math.pi
    # sinθ·(1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + … up to cos^(df−2)θ)
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


def student_t_quantile(level: float, df: int) -> float:
    """t such that P(|T| ≤ t) = ``level`` (e.g. 0.95 → t_{0.975, df}); bisection to 1e-12."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lo, hi = 0.0, 1.0
    while student_t_two_sided_mass(hi, df) < level:
        hi *= 2
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if student_t_two_sided_mass(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class MeanInterval:
    """A sample mean with its two-sided t-interval: ``mean ± half_width`` (nan width for n < 2)."""

    mean: float
    half_width: float
    n: int

    def format(self, digits: int = 3) -> str:
        """``"0.512 ± 0.034"`` (``"0.512"`` when there is a single value)."""
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_interval(values: Sequence[float], level: float = 0.95) -> MeanInterval:
    """Mean of ``values`` and the half-width t_{(1+level)/2, n−1} · s / √n, s the sample std (n − 1).

    Args:
        values: one number per independent repeat (e.g. per seed); at least one.
        level: coverage of the interval.
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval: no values")
    mean = math.fsum(values) / n
    if n < 2:
        return MeanInterval(mean, math.nan, n)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return MeanInterval(mean, student_t_quantile(level, n - 1) * sd / math.sqrt(n), n)
