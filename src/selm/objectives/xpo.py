"""XPO (Xie et al. 2024): online DPO plus an exploration bonus on a reference sample."""

from __future__ import annotations

import torch

from selm.objectives.base import (
    PreferenceBatch,
    register_objective,
    validate_nonnegative,
)
from selm.objectives.common import (
    REFERENCE_PAIR,
    ImplicitRewardObjective,
    smoothed_logistic_loss,
)


@register_objective("xpo")
class XPO(ImplicitRewardObjective):
    r"""Exploratory Preference Optimization, https://arxiv.org/abs/2405.21046 (as in TRL's XPOTrainer).

    .. math::

        L = -\log\sigma(\beta h) + \alpha\log\pi_\theta(\tilde y), \qquad \tilde y \sim \pi_{ref}

    with h the DPO logit (see ``DPO``). The bonus is the policy's summed log-prob of the
    exploration response, with no reference normalization and no β (unlike SELM's α·β·log-ratio),
    so it needs no reference pass over ỹ.

    Inputs: policy/reference chosen/rejected summed log-probs and the policy's explore log-prob,
    [B] each. Output losses: [B]. Own metrics: ``logps/explore``, ``loss/exploration`` (α·log π_θ(ỹ)).

    Args:
        beta: β > 0. Default 0.1.
        alpha: α >= 0. Default 1e-5 (TRL).
    """

    requires = REFERENCE_PAIR | {"policy_explore_logps"}

    def __init__(self, beta: float = 0.1, alpha: float = 1e-5) -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, alpha=alpha)
        self.alpha = float(alpha)

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        bonus = self.alpha * batch.policy_explore_logps
        return smoothed_logistic_loss(self.beta * (chosen - rejected)) + bonus

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        explore = batch.policy_explore_logps.detach().mean()
        return {"logps/explore": explore, "loss/exploration": self.alpha * explore}
