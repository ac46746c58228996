"""VPO (Cen et al. 2024): DPO regularized by the implicit reward's value, optimistic or pessimistic."""

from __future__ import annotations

import torch

from selm.errors import ConfigError
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

SIGNS = {"online": 1.0, "offline": -1.0}


@register_objective("vpo")
class VPO(ImplicitRewardObjective):
    r"""Value-Incentivized Preference Optimization, https://arxiv.org/abs/2405.19320.

    .. math::

        L = -\log\sigma(\beta h) + s\,\alpha\beta\,\log\pi_\theta(y_{cal}), \qquad
        s = +1 \text{ (online: optimism)}, \; -1 \text{ (offline: pessimism)}

    with h the DPO logit (see ``DPO``) and y_cal the calibration response, a sample of
    π_cal = π_ref (the loop's exploration response with ``sampling.explore: sample``). Online, the
    term pushes down the likelihood of what the reference would say (exploration, the same form
    as XPO's bonus with α·β in place of α); offline, it pulls it up (an SFT-like anchor that keeps
    the policy near the data). The practical form here is from the notes in ALGORITHMS.md
    (recalled, not checked against the paper's text); the constants are ours.

    Inputs: policy/reference chosen/rejected summed log-probs and the policy's explore log-prob,
    [B] each. Output losses: [B]. Own metrics: ``logps/explore``, ``loss/value`` (the second term).

    Args:
        beta: β > 0. Default 0.1.
        alpha: α >= 0, weight of the value term. Default 0.001.
        mode: ``"online"`` (default, optimistic) or ``"offline"`` (pessimistic).
    """

    requires = REFERENCE_PAIR | {"policy_explore_logps"}

    def __init__(self, beta: float = 0.1, alpha: float = 0.001, mode: str = "online") -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, alpha=alpha)
        if mode not in SIGNS:
            raise ConfigError(f"objective '{self.name}': mode must be online or offline, got {mode!r}")
        self.alpha = float(alpha)
        self.mode = mode

    def value_term(self, batch: PreferenceBatch) -> torch.Tensor:
        """s·α·β·log π_θ(y_cal): [B]."""
        return SIGNS[self.mode] * self.alpha * self.beta * batch.policy_explore_logps

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return smoothed_logistic_loss(self.beta * (chosen - rejected)) + self.value_term(batch)

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        return {"logps/explore": batch.policy_explore_logps.detach().mean(),
                "loss/value": self.value_term(batch).detach().mean()}
