"""Scalar rewards from a pairwise judge: each response's win rate within its prompt's group."""

from __future__ import annotations

import torch

from selm.errors import ConfigError


def win_rate_rewards(preferences: torch.Tensor) -> torch.Tensor:
    r"""r_i = mean over j ≠ i of P(y_i ≻ y_j), for the n responses of each prompt.

    .. math::

        r_i = \frac{1}{n-1} \sum_{j \ne i} P_{ij}

    A pairwise (or LLM) judge compares two responses; the RL estimators want one number per
    response. The win rate is that number: in [0, 1], 1 for a response the judge prefers to
    every other sample of its prompt, ½ on average over a group when P_ji = 1 − P_ij. The
    diagonal is ignored. If the judge saw each pair in both orders, pass
    ½·(P + 1 − Pᵀ), which cancels a preference for the first (or second) position.

    Args:
        preferences: [..., n, n] P_ij = P(y_i ≻ y_j) in [0, 1] (hard 0/1 verdicts or the judge's
            probabilities), one n × n matrix per prompt.

    Returns:
        [..., n] rewards in [0, 1], in the preferences' dtype.

    Raises:
        ConfigError: n < 2: a response cannot win against nothing (sampling.n must be ≥ 2).
        ValueError: the last two dimensions differ.
    """
    n = preferences.shape[-1]
    if preferences.dim() < 2 or preferences.shape[-2] != n:
        raise ValueError(f"preferences must be [..., n, n], got {tuple(preferences.shape)}")
    if n < 2:
        raise ConfigError("a pairwise judge's reward is the win rate against the prompt's other samples: "
                          "it needs at least 2 per prompt (sampling.n)")
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=preferences.device)
    return (preferences * off_diagonal).sum(-1) / (n - 1)
