"""SPAC (Ji et al. 2024): DPO plus an on-average pessimism term on the round's own sample."""

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
    logratios,
    smoothed_logistic_loss,
)


@register_objective("spac")
class SPAC(ImplicitRewardObjective):
    r"""Self-Play with Adversarial Critic, practical (DPO-form) loss, https://arxiv.org/abs/2406.04274.

    With s(y) = log π_θ(y) − log π_t(y) the implicit reward against the round-start policy π_t
    (``reference: round_start``), h the DPO logit (see ``DPO``) and y′ ∼ π_t the round's own sample
    (the exploration response, ``sampling.explore: sample``):

    .. math::

        L = -\log\sigma(\beta h)
            + \frac{\lambda}{2}\sum_{y_D \in \{y_w, y_l\}} -\log\sigma\big(\beta\,(s(y_D) - s(y'))\big)

    The second term is the critic's on-average pessimism: the value of the current policy is
    underestimated relative to the data distribution, so the loss lowers the policy's own sample
    against every data response (both responses of the pair, averaged). The log-sigmoid stands in
    for the theory's linear term, which would need λ = Θ(C√n). λ = 0 is exactly DPO.

    The form is the reconstruction of ALGORITHMS-2.md §7 (one selm round = one SPAC iteration);
    the paper's full text was not available to check it against, only its abstract.

    Inputs: policy/reference chosen/rejected/explore summed log-probs, [B] each.
    Output losses: [B]. Own metrics: ``logps/explore`` (policy), ``loss/pessimism`` (the second
    term), ``rewards/explore`` (β·s(y′)).

    Args:
        beta: β > 0. Default 0.1.
        lam: λ >= 0, weight of the pessimism term. Default 1.0.
    """

    requires = REFERENCE_PAIR | {"policy_explore_logps", "reference_explore_logps"}

    def __init__(self, beta: float = 0.1, lam: float = 1.0) -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, lam=lam)
        self.lam = float(lam)

    def pessimism(self, chosen: torch.Tensor, rejected: torch.Tensor, batch: PreferenceBatch) -> torch.Tensor:
        """λ/2·Σ_{y_D} −log σ(β(s(y_D) − s(y′))): [B], from s_w, s_l ([B] each)."""
        explore = batch.policy_explore_logps - batch.reference_explore_logps
        data = smoothed_logistic_loss(self.beta * (chosen - explore)) + smoothed_logistic_loss(
            self.beta * (rejected - explore))
        return 0.5 * self.lam * data

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return smoothed_logistic_loss(self.beta * (chosen - rejected)) + self.pessimism(chosen, rejected, batch)

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        chosen, rejected = logratios(batch)
        explore = batch.policy_explore_logps - batch.reference_explore_logps
        return {"logps/explore": batch.policy_explore_logps.detach().mean(),
                "rewards/explore": self.beta * explore.detach().mean(),
                "loss/pessimism": self.pessimism(chosen, rejected, batch).detach().mean()}
