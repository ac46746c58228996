"""The one-line summary of a finished round that ``selm run`` prints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from selm.eval import keys


def summary_line(m: Mapping[str, Any], first: Mapping[str, Any], rounds: int) -> str:
    """``round k/N  gold … (±… vs round 0)  reward …  kl …  win vs π0 …  pairs …  train acc …  len …``.

    Args:
        m: the round's metrics row (see :func:`selm.eval.round_metrics.round_metrics`).
        first: round 0's metrics row, for the gold reward's change.
        rounds: the run's number of training rounds.

    Parts whose metric the round lacks (no task, a pairwise judge, round 0) are left out.
    """
    parts = [f"round {m[keys.ROUND]}/{rounds}"]
    if keys.GOLD_REWARD_MEAN in m:
        gold = m[keys.GOLD_REWARD_MEAN]
        parts.append(f"gold {gold:.3f} ({gold - first[keys.GOLD_REWARD_MEAN]:+.3f} vs round 0)")
    if m[keys.REWARD_MEAN] is not None:
        parts.append(f"reward {m[keys.REWARD_MEAN]:.3f}")
    parts.append(f"kl {m[keys.KL]:.2f}")
    if m.get(keys.WIN_RATE_VS_INITIAL) is not None:
        parts.append(f"win vs π0 {m[keys.WIN_RATE_VS_INITIAL]:.2f}")
    if keys.PAIRS_COUNT in m:
        parts.append(f"pairs {m[keys.PAIRS_COUNT]:.0f}")
    if keys.ROLLOUTS_COUNT in m:
        parts.append(f"rollouts {m[keys.ROLLOUTS_COUNT]:.0f}")
    accuracy = keys.train_key(keys.REWARD_ACCURACIES)
    if accuracy in m:
        parts.append(f"train acc {m[accuracy]:.2f}")
    parts.append(f"len {m[keys.LENGTH_MEAN]:.1f}")
    return "  ".join(parts)
