"""SELM (Zhang et al. 2024): DPO plus an optimism term on the round-start policy's own answer."""

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


@register_objective("selm")
class SELM(ImplicitRewardObjective):
    r"""Self-Exploring Language Models, https://arxiv.org/abs/2405.19332.

    .. math::

        L = -\log\sigma(\beta h) + \alpha\beta\,(\log\pi_\theta(y_0) - \log\pi_{ref}(y_0))

    with h the DPO logit (see ``DPO``) and y_0 the exploration response: in the SELM code, one
    greedy answer of the reference (the policy at the start of the round). Minimizing the second
    term pushes down the likelihood of that answer, the paper's optimism bias. π_ref(y_0) is a
    constant, so the term's gradient is α·β·∇ log π_θ(y_0); it only shifts the logged loss.
    α = 0 is exactly DPO.

    Inputs: policy/reference chosen/rejected/explore summed log-probs, [B] each.
    Output losses: [B]. Own metrics: ``logps/explore`` (policy), ``loss/optimism`` (the second term).

    Args:
        beta: β > 0. Default 0.01 (all SELM recipes).
        alpha: α >= 0. Default 0.001 (Zephyr and Phi-3 recipes; Llama-3 uses 1e-4).
    """

    requires = REFERENCE_PAIR | {"policy_explore_logps", "reference_explore_logps"}

    def __init__(self, beta: float = 0.01, alpha: float = 0.001) -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, alpha=alpha)
        self.alpha = float(alpha)

    def optimism(self, batch: PreferenceBatch) -> torch.Tensor:
        """α·β·(log π_θ(y_0) − log π_ref(y_0)): [B]."""
        return self.alpha * self.beta * (batch.policy_explore_logps - batch.reference_explore_logps)

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return smoothed_logistic_loss(self.beta * (chosen - rejected)) + self.optimism(batch)

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        return {"logps/explore": batch.policy_explore_logps.detach().mean(),
                "loss/optimism": self.optimism(batch).detach().mean()}
