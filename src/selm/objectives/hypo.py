"""HyPO (Song et al. 2024): offline DPO plus a reverse-KL penalty estimated on online samples."""

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


@register_objective("hypo")
class HyPO(ImplicitRewardObjective):
    r"""Hybrid Preference Optimization ("The Importance of Online Data"), https://arxiv.org/abs/2406.01462.

    .. math::

        L = -\log\sigma(\beta h) + \lambda\,\mathrm{KL}(\pi_\theta \,\|\, \pi_{ref}),\qquad
        \mathrm{KL} \approx \frac1k\sum_j \big(\log\pi_\theta(y_j) - \log\pi_{ref}(y_j)\big)

    h is the DPO logit of the (offline) pair; y_1..y_k are online samples of the pair's prompt
    (``policy_online_logps``, ``reference_online_logps``, [B, k], k >= 2). The KL's gradient is
    estimated with leave-one-out REINFORCE (RLOO): with reward r_j = −sg(log π_θ(y_j) − log π_ref(y_j))
    and advantage A_j = r_j − mean_{i≠j} r_i, the term's gradient is that of
    −λ·(1/k)Σ_j A_j·log π_θ(y_j). The term's *value* is λ times the KL estimate above, so the
    logged loss shows the penalty; its gradient is only the RLOO one.

    In the loop the online samples are the round's policy samples, drawn from the round-start
    policy: within a round they are slightly off-policy (no importance weight).

    Inputs: policy/reference chosen/rejected summed log-probs, [B] each; online log-probs, [B, k].
    Output losses: [B]. Own metrics: ``hypo/kl`` (the KL estimate), ``loss/kl`` (λ·KL).

    Args:
        beta: β > 0. Default 0.1.
        kl_coef: λ >= 0. Default 0.05 (ours; the paper's value was not checked).
    """

    requires = REFERENCE_PAIR | {"policy_online_logps", "reference_online_logps"}

    def __init__(self, beta: float = 0.1, kl_coef: float = 0.05) -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, kl_coef=kl_coef)
        self.kl_coef = float(kl_coef)

    def kl_term(self, batch: PreferenceBatch) -> torch.Tensor:
        """[B]: value λ·KL estimate, gradient λ·∇ of the RLOO surrogate."""
        policy, reference = batch.policy_online_logps, batch.reference_online_logps
        k = policy.shape[1]
        if k < 2:
            raise ValueError(f"objective '{self.name}': leave-one-out needs >= 2 online samples per pair, got {k}")
        log_ratio = (policy - reference).detach()
        reward = -log_ratio
        advantage = reward - (reward.sum(1, keepdim=True) - reward) / (k - 1)
        surrogate = -(advantage * policy).mean(1)
        return self.kl_coef * (log_ratio.mean(1) + surrogate - surrogate.detach())

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return smoothed_logistic_loss(self.beta * (chosen - rejected)) + self.kl_term(batch)

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        kl = (batch.policy_online_logps - batch.reference_online_logps).detach().mean()
        return {"hypo/kl": kl, "loss/kl": self.kl_coef * kl}
