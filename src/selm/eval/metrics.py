"""Evaluation statistics used in every round's metrics row."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation; (nan, nan) for an empty sequence."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def win_rate(scores: Sequence[float], baseline_scores: Sequence[float]) -> float:
    """Fraction of items where ``scores`` beats ``baseline_scores`` (item by item); ties count half."""
    if len(scores) != len(baseline_scores):
        raise ValueError(f"win_rate: {len(scores)} scores against {len(baseline_scores)} baseline scores")
    if not scores:
        return math.nan
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline_scores))
    return wins / len(scores)


def kl_estimate(policy_logps: Sequence[float], initial_logps: Sequence[float]) -> float:
    """Monte-Carlo KL(π ‖ π0) ≈ mean_y [log π(y) − log π0(y)] over samples y ~ π (nats per response).

    Unbiased only when y is sampled from π at temperature 1 without truncation.
    """
    if len(policy_logps) != len(initial_logps):
        raise ValueError("kl_estimate: length mismatch")
    if not policy_logps:
        return math.nan
    return sum(p - q for p, q in zip(policy_logps, initial_logps)) / len(policy_logps)


def distinct_n(token_sequences: Sequence[Sequence[int]], n: int = 2) -> float:
    """Distinct-n diversity: unique n-grams / total n-grams over all responses (0 if none)."""
    total, unique = 0, set()
    for tokens in token_sequences:
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0
