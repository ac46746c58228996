"""Generalized advantage estimation with a critic (PPO)."""

from __future__ import annotations

from typing import ClassVar

from selm.objectives.advantages.base import (
    ADVANTAGE_ESTIMATORS,
    WHAT,
    AdvantageEstimator,
    AdvantageInputs,
    Advantages,
    validate_flag,
)
from selm.objectives.advantages.tokens import generalized_advantages, masked_whiten, token_rewards
from selm.objectives.base import validate_range


@ADVANTAGE_ESTIMATORS.register
class GAEAdvantage(AdvantageEstimator):
    r"""GAE for PPO-based RLHF (Ouyang et al. 2022; TRL's PPOTrainer, OpenRLHF ``gae``).

    .. math::

        r_t = -\beta\,k1_t + [t = \text{last}]\,R \qquad
        \delta_t = r_t + \gamma V_{t+1} - V_t \qquad
        A_t = \delta_t + \gamma\lambda A_{t+1} \qquad
        \text{returns}_t = A_t + V_t

    V_t is the critic's value of the state before token t (``values``, recorded with the
    rollout); V and A are 0 after the last token, where the judge's reward R sits. The returns
    (the critic's targets) use the raw advantages; the advantages handed to the policy loss are
    then whitened over every response token of the batch (``whiten``, as TRL and OpenRLHF).

    Inputs: rewards [B], response_mask [B, T], values [B, T], ``kl`` [B, T] when β > 0.
    Outputs: advantages [B, T], returns [B, T].

    Args:
        gamma: discount γ in [0, 1]. Default 1 (TRL, OpenRLHF).
        lam: λ in [0, 1]. Default 0.95 (TRL; OpenRLHF uses 1).
        kl_coef: β ≥ 0 of the per-token KL in the reward. Default 0.05 (TRL's ``kl_coef``).
        whiten: whiten the advantages over the batch. Default True.
    """

    name: ClassVar[str] = "gae"

    def __init__(self, gamma: float = 1.0, lam: float = 0.95, kl_coef: float = 0.05, whiten: bool = True) -> None:
        super().__init__(kl_coef)
        validate_range(self.name, "gamma", gamma, 0.0, 1.0, high_closed=True, what=WHAT)
        validate_range(self.name, "lam", lam, 0.0, 1.0, high_closed=True, what=WHAT)
        self.gamma = float(gamma)
        self.lam = float(lam)
        self.whiten = validate_flag(self.name, "whiten", whiten)

    @property
    def requires(self) -> frozenset[str]:
        return super().requires | {"values"}

    def estimate(self, inputs: AdvantageInputs) -> Advantages:
        mask = inputs.mask
        values = inputs.values * mask
        rewards = token_rewards(inputs, inputs.rewards, self.kl_coef)
        advantages = generalized_advantages(rewards, values, mask, self.gamma, self.lam)
        returns = advantages + values
        return Advantages(masked_whiten(advantages, mask) if self.whiten else advantages, returns)
