"""GRPO's group-normalised advantage and Dr. GRPO's mean-only one."""

from __future__ import annotations

from typing import ClassVar

from selm.errors import ConfigError
from selm.objectives.advantages.base import (
    ADVANTAGE_ESTIMATORS,
    WHAT,
    AdvantageEstimator,
    AdvantageInputs,
    Advantages,
    group_mean,
    group_std,
)
from selm.objectives.advantages.tokens import broadcast, sequence_rewards

SCALE_REWARDS = ("group", "batch", "none")
# Added to the standard deviation (TRL's GRPOTrainer; verl adds 1e-6, OpenRLHF 1e-9).
STD_EPS = 1e-4


@ADVANTAGE_ESTIMATORS.register
class GRPOAdvantage(AdvantageEstimator):
    r"""GRPO, Shao et al. 2024 (DeepSeekMath), https://arxiv.org/abs/2402.03300, as TRL's GRPOTrainer.

    .. math::

        \hat A_i = \frac{R'_i - \operatorname{mean}_{j \in g(i)} R'_j}{\sigma + 10^{-4}}

    repeated over the tokens of response i, where g(i) is its prompt's group, R' = R − β·Σ_t k1_t
    (R itself for the default β = 0: GRPO puts the KL in the loss), and σ is Bessel-corrected
    (÷ (n − 1)): the group's standard deviation (``scale_rewards="group"``), the whole batch's
    standard deviation of R' (``"batch"``, with the *group* mean still subtracted), or no division
    at all (``"none"``, Dr. GRPO's advantage). TRL's convention throughout (``grpo_trainer.py``,
    ``_generate_and_score_completions``); verl divides by std + 1e-6, OpenRLHF by std + 1e-9.
    A group whose rewards are all equal gets advantage 0.

    Inputs: rewards [B], group_ids [B], response_mask [B, T] (and ``kl`` when β > 0). Output:
    advantages [B, T].

    Args:
        scale_rewards: ``"group"`` (default), ``"batch"`` or ``"none"``.
        kl_coef: β ≥ 0 of the KL in the reward. Default 0.
    """

    name: ClassVar[str] = "grpo"
    group_based: ClassVar[bool] = True

    def __init__(self, scale_rewards: str = "group", kl_coef: float = 0.0) -> None:
        super().__init__(kl_coef)
        if scale_rewards not in SCALE_REWARDS:
            raise ConfigError(f"{WHAT} '{self.name}': scale_rewards must be one of {', '.join(SCALE_REWARDS)}, "
                              f"got {scale_rewards!r}")
        self.scale_rewards = scale_rewards

    def estimate(self, inputs: AdvantageInputs) -> Advantages:
        rewards = sequence_rewards(inputs, self.kl_coef)
        advantages = rewards - group_mean(rewards, inputs.group_ids)
        if self.scale_rewards == "group":
            advantages = advantages / (group_std(rewards, inputs.group_ids) + STD_EPS)
        elif self.scale_rewards == "batch":
            advantages = advantages / (rewards.std() + STD_EPS)
        return Advantages(broadcast(advantages, inputs.mask))


@ADVANTAGE_ESTIMATORS.register
class DrGRPOAdvantage(GRPOAdvantage):
    r"""Dr. GRPO, Liu et al. 2025, https://arxiv.org/abs/2503.20783: GRPO's advantage without the
    division by the standard deviation, which favours prompts whose rewards barely differ.

    .. math::

        \hat A_i = R'_i - \operatorname{mean}_{j \in g(i)} R'_j

    (TRL: ``scale_rewards="none"``.) Its other half, the constant length normaliser, is the
    policy loss's ``loss_type="dr_grpo"``.

    Args:
        kl_coef: β ≥ 0 of the KL in the reward. Default 0.
    """

    name: ClassVar[str] = "dr_grpo"

    def __init__(self, kl_coef: float = 0.0) -> None:
        super().__init__("none", kl_coef)
