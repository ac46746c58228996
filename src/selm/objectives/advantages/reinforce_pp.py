"""REINFORCE++ and REINFORCE++-baseline: token returns whitened over the whole batch."""

from __future__ import annotations

from typing import ClassVar

import torch

from selm.objectives.advantages.base import (
    ADVANTAGE_ESTIMATORS,
    WHAT,
    AdvantageEstimator,
    AdvantageInputs,
    Advantages,
    group_mean,
)
from selm.objectives.advantages.tokens import discounted_returns, masked_whiten, token_rewards
from selm.objectives.base import validate_range


@ADVANTAGE_ESTIMATORS.register
class ReinforcePPAdvantage(AdvantageEstimator):
    r"""REINFORCE++, Hu 2025, https://arxiv.org/abs/2501.03262 (OpenRLHF ``advantage_estimator=reinforce``).

    .. math::

        r_t = -\beta\,k1_t + [t = \text{last}]\,R \qquad
        G_t = \sum_{s \ge t} \gamma^{s-t} r_s \qquad
        \hat A_t = \frac{G_t - \mu}{\sqrt{\sigma^2 + 10^{-8}}}

    μ and σ² (Bessel-corrected) over every response token of the batch: the whitening is global,
    not per prompt, and no critic is needed.

    Inputs: rewards [B], response_mask [B, T], ``kl`` [B, T] when β > 0. Output: advantages [B, T].

    Args:
        kl_coef: β ≥ 0 of the per-token KL in the reward. Default 0.01 (OpenRLHF's ``init_kl_coef``).
        gamma: discount γ in [0, 1]. Default 1.
    """

    name: ClassVar[str] = "reinforce_pp"

    def __init__(self, kl_coef: float = 0.01, gamma: float = 1.0) -> None:
        super().__init__(kl_coef)
        validate_range(self.name, "gamma", gamma, 0.0, 1.0, high_closed=True, what=WHAT)
        self.gamma = float(gamma)

    def outcome(self, inputs: AdvantageInputs) -> torch.Tensor:
        """[B] the scalar placed on each response's last token."""
        return inputs.rewards

    def estimate(self, inputs: AdvantageInputs) -> Advantages:
        rewards = token_rewards(inputs, self.outcome(inputs), self.kl_coef)
        returns = discounted_returns(rewards, inputs.mask, self.gamma)
        return Advantages(masked_whiten(returns, inputs.mask))


@ADVANTAGE_ESTIMATORS.register
class ReinforcePPBaselineAdvantage(ReinforcePPAdvantage):
    r"""REINFORCE++-baseline (OpenRLHF ``reinforce_baseline``; verl ``reinforce_plus_plus_baseline``):
    REINFORCE++ with each prompt's mean reward subtracted first, then the same global whitening.

    .. math::

        r_t = -\beta\,k1_t + [t = \text{last}]\,(R - \operatorname{mean}_{j \in g} R_j)

    γ is 1, as OpenRLHF forces it for its group-baseline estimators. OpenRLHF's example puts the
    KL in the loss instead (k2, coefficient 1e-5: the policy loss's ``beta`` and
    ``kl_estimator``), hence the default β = 0 here.

    Args:
        kl_coef: β ≥ 0 of the per-token KL in the reward. Default 0.
    """

    name: ClassVar[str] = "reinforce_pp_baseline"
    group_based: ClassVar[bool] = True

    def __init__(self, kl_coef: float = 0.0) -> None:
        super().__init__(kl_coef, gamma=1.0)

    def outcome(self, inputs: AdvantageInputs) -> torch.Tensor:
        return inputs.rewards - group_mean(inputs.rewards, inputs.group_ids)
