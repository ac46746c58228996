"""Unseen extrapolation: how a round's training moves probability mass onto responses it never saw.

The SELM paper's second claim is that, unlike DPO, its objective "reduces indiscriminate favor of
unseen extrapolations". For a training prompt x of round k let S(x) be the distinct responses of
x's training examples (chosen and rejected of its pairs, or its rollouts). The mass outside them,

    U(x) = Σ_{y ∉ S(x)} π(y | x) = 1 − Σ_{y ∈ S(x)} π(y | x),

is exact for any task from |S(x)| log-probs, because the sampling outcomes (responses that end in
EOS or a stop string, and prefixes cut at the token budget) partition the probability space. The
round's metric is the mean over its prompts of U(x) under π_k minus U(x) under π_{k−1}: positive
when training moved mass onto responses it never saw.

Whether that mass went somewhere good is the second number: the change of π(y*|x) summed over the
task's ideal responses y* that are not in S(x) (``best``), exact from their log-probs too. Its
ratio to the first says how discriminate the extrapolation was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from selm.eval import keys


def outside_mass(logps: Sequence[float]) -> float:
    """1 − Σ_y exp(log π(y)) over distinct responses y: the mass on every other response, [0, 1].

    Args:
        logps: summed log-probs (nats) of distinct responses of one prompt.
    """
    return 1.0 - math.fsum(math.exp(lp) for lp in logps)


def unseen_mass_change(seen_before: Sequence[Sequence[float]], seen_after: Sequence[Sequence[float]]) -> float:
    """Mean over prompts of U_after(x) − U_before(x), U the mass outside the prompt's seen responses.

    Args:
        seen_before / seen_after: per prompt, the summed log-probs (nats) of its distinct seen
            responses under the round-start policy / the trained policy; the same responses in the
            same order in both.
    Returns:
        the mean change, probability units in [−1, 1]; nan without prompts.
    """
    if len(seen_before) != len(seen_after):
        raise ValueError(f"unseen_mass_change: {len(seen_before)} prompts before, {len(seen_after)} after")
    if not seen_before:
        return math.nan
    return math.fsum(outside_mass(a) - outside_mass(b) for b, a in zip(seen_before, seen_after)) / len(seen_before)


def unseen_best_mass_change(best_before: Sequence[Sequence[float]], best_after: Sequence[Sequence[float]]) -> float:
    """Mean over prompts of the change of Σ π(y*) over the prompt's unseen ideal responses y*.

    Args:
        best_before / best_after: per prompt, the summed log-probs (nats) of its ideal responses that
            are not among its seen ones (possibly none), under the round-start / trained policy.
    Returns:
        the mean change, probability units; nan without prompts.
    """
    if len(best_before) != len(best_after):
        raise ValueError(f"unseen_best_mass_change: {len(best_before)} prompts before, {len(best_after)} after")
    if not best_before:
        return math.nan
    total = math.fsum(math.exp(a) for row in best_after for a in row) - math.fsum(
        math.exp(b) for row in best_before for b in row)
    return total / len(best_before)


def extrapolation_metrics(seen_before: Sequence[Sequence[float]], seen_after: Sequence[Sequence[float]],
                          best_before: Sequence[Sequence[float]] | None = None,
                          best_after: Sequence[Sequence[float]] | None = None) -> dict[str, float]:
    """The round's ``eval/unseen_mass_change`` and, when the ideal responses are known,
    ``eval/unseen_best_mass_change`` (see :func:`unseen_mass_change`, :func:`unseen_best_mass_change`);
    plus the number of prompts they average over."""
    out = {keys.UNSEEN_MASS_CHANGE: unseen_mass_change(seen_before, seen_after),
           keys.UNSEEN_MASS_PROMPTS: float(len(seen_before))}
    if best_before is not None and best_after is not None:
        out[keys.UNSEEN_BEST_MASS_CHANGE] = unseen_best_mass_change(best_before, best_after)
    return out
