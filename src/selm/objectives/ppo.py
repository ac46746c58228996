"""PPO for RLHF: the clipped policy loss plus the critic's clipped value loss."""

from __future__ import annotations

import torch

from selm.objectives.base import register_objective, validate_nonnegative, validate_positive
from selm.objectives.grpo import GRPOLoss
from selm.objectives.rollout import RolloutBatch, masked_mean


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       value_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PPO's value loss with the new values kept near the rollout's:

    .. math::

        \ell^V_t = \tfrac12 \max\big((V_t - G_t)^2,\ (V^{old}_t + \operatorname{clip}(V_t - V^{old}_t, -\varepsilon_v, \varepsilon_v) - G_t)^2\big)

    Args:
        values: [B, T] V_θ, the critic now (gradient flows here).
        old_values: [B, T] V_old, the critic when the batch was sampled.
        returns: [B, T] G_t, the targets (GAE's returns).
        value_clip: ε_v > 0, reward units.

    Returns:
        (loss [B, T] in squared reward units, clipped [B, T] bool: the clipped branch is larger).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
    unclipped_loss = (values - returns).square()
    clipped_loss = (clipped_values - returns).square()
    return 0.5 * torch.max(unclipped_loss, clipped_loss), clipped_loss > unclipped_loss


@register_objective("ppo")
class PPOLoss(GRPOLoss):
    r"""PPO for RLHF (Schulman et al. 2017; Ouyang et al. 2022), as TRL's PPOTrainer and OpenRLHF.

    .. math::

        \ell_t = \ell^{clip}_t + c_v\,\ell^V_t \;(+\,\beta\,k_t - c\,H_t)

    ℓ^clip is ``grpo``'s per-token clipped policy loss on GAE's advantages (whitened), ℓ^V the
    clipped value loss (``clipped_value_loss``) on GAE's returns, both aggregated by
    ``loss_type``. The KL to the reference is normally in the reward (the ``gae`` estimator's
    ``kl_coef``), so ``beta`` defaults to 0. The default ``bnpo`` is TRL's and OpenRLHF's masked
    mean per micro-batch; TRL's value loss also counts the position after the last token, where
    TRL puts the reward (selm puts it on the last token, see ``selm.objectives.advantages``). A
    separate learning rate for the critic is the trainer's.

    Inputs: the ``grpo`` fields plus values, old_values and returns, [B, T]. Output losses: [B].
    Metrics: ``grpo``'s plus ``loss/value`` (token mean of ℓ^V) and ``val/clipfrac`` (TRL's: the
    fraction of tokens whose value loss is the clipped branch).

    Args:
        vf_coef: c_v ≥ 0. Default 0.1 (TRL).
        value_clip: ε_v > 0. Default 0.2 (TRL's ``cliprange_value``; OpenRLHF 0.5).
        epsilon_low, epsilon_high, beta, kl_estimator, entropy_coef, loss_type,
            max_completion_length: as ``grpo``, with defaults 0.2, 0.2, 0, ``k3``, 0, ``bnpo``, None.
    """

    def __init__(self, vf_coef: float = 0.1, value_clip: float = 0.2, epsilon_low: float = 0.2,
                 epsilon_high: float = 0.2, beta: float = 0.0, kl_estimator: str = "k3", entropy_coef: float = 0.0,
                 loss_type: str = "bnpo", max_completion_length: int | None = None) -> None:
        super().__init__(beta=beta, epsilon_low=epsilon_low, epsilon_high=epsilon_high, loss_type=loss_type,
                         max_completion_length=max_completion_length, kl_estimator=kl_estimator,
                         entropy_coef=entropy_coef)
        validate_nonnegative(self.name, vf_coef=vf_coef)
        validate_positive(self.name, value_clip=value_clip)
        self.vf_coef = float(vf_coef)
        self.value_clip = float(value_clip)

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return super().requires | {"values", "old_values", "returns"}

    def token_losses(self, batch: RolloutBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, metrics = super().token_losses(batch)
        value_loss, clipped = clipped_value_loss(batch.values, batch.old_values, batch.returns, self.value_clip)
        metrics["loss/value"] = masked_mean(value_loss.detach(), batch.mask)
        metrics["val/clipfrac"] = masked_mean(clipped.to(batch.mask.dtype), batch.mask)
        return losses + self.vf_coef * value_loss, metrics
