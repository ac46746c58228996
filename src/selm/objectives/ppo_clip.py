r"""The PPO clipped surrogate (Schulman et al. 2017, https://arxiv.org/abs/1707.06347) and its
clip-fraction metrics, shared by the rollout objectives (per token: ``grpo``, ``ppo``; per
sequence: ``rloo``).

.. math::

    \ell = -\min\big(\rho\hat A,\ \operatorname{clip}(\rho, 1-\varepsilon_{low}, 1+\varepsilon_{high})\,\hat A\big)
    \qquad \rho = \exp(\log\pi_\theta - \log\pi_{old})

With ε_high > ε_low this is DAPO's clip-higher (Yu et al. 2025, https://arxiv.org/abs/2503.14476,
ε_low = 0.2, ε_high = 0.28). The clipped branch is the minimum, and has zero gradient, exactly when
ρ > 1 + ε_high with Â > 0, or ρ < 1 − ε_low with Â < 0: the update stops there.
"""

from __future__ import annotations

import torch

from selm.objectives.base import validate_nonnegative, validate_range
from selm.objectives.rollout import masked_mean


def validate_clip(objective: str, epsilon_low: float, epsilon_high: float) -> None:
    """Raise ConfigError unless ε_low is in [0, 1) (the lower bound 1 − ε_low stays positive) and ε_high >= 0."""
    validate_range(objective, "epsilon_low", epsilon_low, 0.0, 1.0)
    validate_nonnegative(objective, epsilon_high=epsilon_high)


def clipped_surrogate(log_ratio: torch.Tensor, advantages: torch.Tensor, epsilon_low: float,
                      epsilon_high: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped policy loss and where each side clips.

    Args:
        log_ratio: log ρ = log π_θ − log π_old, [B, T] per token or [B] per sequence.
        advantages: Â, the same shape (fixed: no gradient flows into it).
        epsilon_low: ε_low of the lower bound 1 − ε_low.
        epsilon_high: ε_high of the upper bound 1 + ε_high.

    Returns:
        (loss, low_clipped, high_clipped): the loss −min(ρÂ, clip(ρ)Â) in advantage units, and two
        bool masks of the same shape: ρ < 1 − ε_low with Â < 0, and ρ > 1 + ε_high with Â > 0
        (TRL's definitions of ``clip_ratio/low`` and ``clip_ratio/high``).
    """
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return loss, low, high


def clip_metrics(low: torch.Tensor, high: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """TRL's ``clip_ratio/low_mean``, ``clip_ratio/high_mean`` and ``clip_ratio/region_mean``: the
    fraction of masked entries (tokens, or sequences with a mask of ones) clipped on each side and on
    either, as scalars in ``mask``'s dtype."""
    def fraction(clipped: torch.Tensor) -> torch.Tensor:
        return masked_mean(clipped.to(mask.dtype), mask)

    return {"clip_ratio/low_mean": fraction(low), "clip_ratio/high_mean": fraction(high),
            "clip_ratio/region_mean": fraction(low | high)}
