r"""PAMA: Pareto Multi-Objective Alignment (He & Maghsudi, ECML-PKDD 2025, https://arxiv.org/abs/2508.07768).

MGDA would weigh the n objectives' gradients by ``min_{c∈Δ} ‖Σ_i c_i ∇L^(i)‖²`` (O(n²d) for d
parameters). PAMA bounds it under *Noon PPO* (advantages floored at 0, ``A_t = max(A'_t, 0)``) by a
problem over n numbers, one per objective:

.. math::

    \min_{c\in\Delta_n} \Big(\sum_i c_i\, a_i\Big)^2,
    \qquad a_i = I(A^{(i)}) = \text{the unclipped, non-negative advantage term of objective } i

whose value has a closed form (Theorem 1): ``s* = Σ_i c*_i a_i = Proj_[min_i a_i, max_i a_i](0)``.
The policy step is Noon PPO's clipped surrogate with s* as its advantage. With Noon's floor every
a_i ≥ 0, so s* = min_i a_i: the step follows the objective that gains least, and stops (s* = 0)
when one objective has no positive advantage left.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch

from selm.errors import ConfigError
from selm.objectives.base import register_objective
from selm.objectives.grpo import GRPOLoss
from selm.objectives.rollout import RolloutBatch

Scope = Literal["batch", "token"]
SCOPES = ("batch", "token")


def pama_weights(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PAMA's closed-form Pareto step: simplex weights c* and the combined value s* (Theorem 1).

    Solves, independently for every leading index,

    .. math::

        c^* \in \arg\min_{c\in\Delta_K} \Big(\sum_{i=1}^K c_i a_i\Big)^2,
        \qquad s^* = \sum_i c^*_i a_i = \begin{cases}
            \min_i a_i & \text{if all } a_i > 0\\
            \max_i a_i & \text{if all } a_i < 0\\
            0 & \text{if } \min_i a_i \le 0 \le \max_i a_i
        \end{cases}

    i.e. s* is the point of [min_i a_i, max_i a_i] (the values c·a can take on the simplex)
    nearest to 0. s* is unique; c* is not when values tie or change sign, and the one returned
    puts all its mass on the smallest and the largest value: c* = e_argmin (all > 0), e_argmax
    (all < 0), else ``c_argmin = max/(max − min)``, ``c_argmax = −min/(max − min)`` (e_argmin when
    every value is 0).

    Args:
        values: [..., K] a_i per objective, advantage units (PAMA: ``objective_scalars``).

    Returns:
        (weights [..., K] on the simplex, s* [...] in the values' units); no gradient.
    """
    values = values.detach()
    low, low_index = values.min(dim=-1)
    high, high_index = values.max(dim=-1)
    zero = torch.zeros_like(low)
    one = torch.ones_like(low)
    s_star = torch.where(low > 0, low, torch.where(high < 0, high, zero))
    span = high - low
    straddles = (low <= 0) & (high >= 0) & (span > 0)
    safe_span = torch.where(straddles, span, one)
    # Mass on the smallest value: all of it when every value is > 0 (or all are 0), none when every
    # value is < 0, and max/(max − min) when they straddle 0, which makes c·a = 0.
    weight_low = torch.where(high < 0, zero, one)
    weight_low = torch.where(straddles, high / safe_span, weight_low)
    weight_high = 1 - weight_low
    weights = torch.zeros_like(values)
    weights.scatter_add_(-1, low_index.unsqueeze(-1), weight_low.unsqueeze(-1))
    weights.scatter_add_(-1, high_index.unsqueeze(-1), weight_high.unsqueeze(-1))
    return weights, s_star


def noon_unclipped_advantages(objective_advantages: torch.Tensor, log_ratio: torch.Tensor,
                              epsilon_high: float) -> torch.Tensor:
    """I(A) per token and objective: Noon's floored advantage where the ratio is not clipped.

    For A ≥ 0 the clipped surrogate min(ρA, clip(ρ)A) stops (zero gradient) exactly where
    ρ > 1 + ε_high, so only the other tokens carry an objective's gradient.

    Args:
        objective_advantages: [B, T, K] A'^(i)_t, advantage units.
        log_ratio: [B, T] log ρ_t = log π_θ − log π_old.
        epsilon_high: ε of the upper clip bound.

    Returns:
        [B, T, K] max(A'^(i)_t, 0)·[ρ_t ≤ 1 + ε_high], advantage units; no gradient.
    """
    unclipped = (log_ratio.detach().exp() <= 1 + epsilon_high).to(objective_advantages.dtype)
    return objective_advantages.detach().clamp(min=0) * unclipped.unsqueeze(-1)


@register_objective("pama")
class PAMALoss(GRPOLoss):
    r"""PAMA's policy loss: Noon PPO with the closed-form Pareto advantage s* of K objectives.

    Per token, with ρ_t = exp(log π_θ − log π_old) and ``objective_advantages`` A'^(i)_t of the K
    rewards of a ``vector`` judge (one advantage estimator run per objective):

    .. math::

        a_i = \frac{\sum_{b,t} m_{bt}\, I(A^{(i)})_{bt}}{\sum_{b,t} m_{bt}},\quad
        s^* = \text{Proj}_{[\min_i a_i, \max_i a_i]}(0),\quad
        \ell_t = -s^*\min\big(\rho_t,\ \operatorname{clip}(\rho_t, 1-\varepsilon_{low}, 1+\varepsilon_{high})\big)

    (``noon_unclipped_advantages``, ``pama_weights``), plus ``grpo``'s optional β·KL and entropy
    terms, aggregated by ``loss_type``. This is ``grpo``'s loss with every advantage set to s*
    (≥ 0, so −min(ρs*, clip(ρ)s*) = −s*·min(ρ, clip(ρ))).

    Interpretations, where the paper's text was not available to check:

    - ``scope="batch"`` (default) computes one s* from the masked token means over the batch the
      objective is given, as the third-party verl port (yining610/ctwa, ``ray_trainer_pama.py``)
      does over its rollout batch; selm hands the objective one micro-batch, so for one s* per
      optimizer step use one micro-batch per step. ``scope="token"`` solves the closed form per
      token on that token's I(A) vector instead.
    - ρ is against the policy that sampled the batch (PPO's π_old; the paper builds on TRL's PPO,
      whose ratio is that one). The paper writes u = π_θ/π_θref, and the verl port divides by the
      reference model's probabilities instead.
    - The paper's n value heads (GAE per objective) are the advantage estimators' business; this
      loss trains no critic.

    Inputs: ``objective_advantages`` [B, T, K] and sampling log-probs (/ reference, / entropies),
    [B, T]. Output losses: [B]. Metrics: ``grpo``'s, ``pama/s_star`` (mean over tokens for
    ``scope="token"``) and, for ``scope="batch"``, ``pama/weight_i`` (c*_i) and ``pama/objective_i`` (a_i).

    Args:
        scope: ``batch`` (default) or ``token``.
        epsilon_low, epsilon_high: the clip range, default 0.2 each (the paper's cliprange).
        beta, kl_estimator, entropy_coef, loss_type, max_completion_length: as ``grpo``, with
            defaults 0 (the paper's KL, 0.2, is in the reward), ``k3``, 0, ``bnpo`` (TRL's PPO), None.
    """

    def __init__(self, scope: Scope = "batch", epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                 beta: float = 0.0, kl_estimator: str = "k3", entropy_coef: float = 0.0, loss_type: str = "bnpo",
                 max_completion_length: int | None = None) -> None:
        super().__init__(beta=beta, epsilon_low=epsilon_low, epsilon_high=epsilon_high, loss_type=loss_type,
                         max_completion_length=max_completion_length, kl_estimator=kl_estimator,
                         entropy_coef=entropy_coef)
        if scope not in SCOPES:
            raise ConfigError(f"objective '{self.name}': scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.scope = scope

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return (super().requires - {"advantages"}) | {"objective_advantages"}

    def token_losses(self, batch: RolloutBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(ℓ [B, T], metrics): the per-token loss before aggregation, and its detached metrics."""
        mask = batch.mask
        gains = noon_unclipped_advantages(batch.objective_advantages,
                                          batch.policy_token_logps - batch.sampling_token_logps, self.epsilon_high)
        if self.scope == "token":
            _, s_star = pama_weights(gains)
            advantages = s_star * mask
            extra = {"pama/s_star": (s_star * mask).sum() / mask.sum().clamp(min=1.0)}
        else:
            scalars = (gains * mask.unsqueeze(-1)).sum(dim=(0, 1)) / mask.sum().clamp(min=1.0)
            weights, s_star = pama_weights(scalars)
            advantages = s_star * mask
            extra = {"pama/s_star": s_star,
                     **{f"pama/weight_{i}": w for i, w in enumerate(weights)},
                     **{f"pama/objective_{i}": a for i, a in enumerate(scalars)}}
        losses, metrics = super().token_losses(replace(batch, advantages=advantages))
        return losses, {**metrics, **extra}
