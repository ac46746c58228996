"""RLOO's leave-one-out baseline."""

from __future__ import annotations

from typing import ClassVar

from selm.objectives.advantages.base import (
    ADVANTAGE_ESTIMATORS,
    AdvantageEstimator,
    AdvantageInputs,
    Advantages,
    group_min,
    group_sums,
    validate_flag,
)
from selm.objectives.advantages.grpo import STD_EPS
from selm.objectives.advantages.tokens import broadcast, sequence_rewards


@ADVANTAGE_ESTIMATORS.register
class RLOOAdvantage(AdvantageEstimator):
    r"""REINFORCE leave-one-out, Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740, as TRL's RLOOTrainer.

    .. math::

        R'_i = R_i - \beta \sum_t k1_{i,t} \qquad
        \hat A_i = R'_i - \frac{1}{k-1}\sum_{j \in g(i), j \ne i} R'_j = \frac{k}{k-1}\,(R'_i - \bar R')

    for a group g(i) of k responses, repeated over the tokens of response i. The baseline of a
    response does not depend on it, so the estimate stays unbiased, and the advantages of a group
    sum to 0. With ``normalize=True`` (TRL's ``normalize_advantages``) the batch's advantages are
    then standardised: (Â − mean)/(std + 10⁻⁴), Bessel-corrected.

    Inputs: rewards [B], group_ids [B], response_mask [B, T], ``kl`` [B, T] when β > 0.
    Output: advantages [B, T].

    Args:
        kl_coef: β ≥ 0 of the KL (k1 of the sampling policy, summed per response) in the reward.
            Default 0.05 (TRL's ``beta``).
        normalize: standardise the advantages over the batch. Default False.
    """

    name: ClassVar[str] = "rloo"
    group_based: ClassVar[bool] = True

    def __init__(self, kl_coef: float = 0.05, normalize: bool = False) -> None:
        super().__init__(kl_coef)
        self.normalize = validate_flag(self.name, "normalize", normalize)

    def estimate(self, inputs: AdvantageInputs) -> Advantages:
        rewards = sequence_rewards(inputs, self.kl_coef)
        # A shift common to the group leaves the differences as they are and makes equal rewards exactly 0.
        rewards = rewards - group_min(rewards, inputs.group_ids)
        sums, counts = group_sums(rewards, inputs.group_ids)
        advantages = rewards - (sums - rewards) / (counts - 1)
        if self.normalize:
            advantages = (advantages - advantages.mean()) / (advantages.std() + STD_EPS)
        return Advantages(broadcast(advantages, inputs.mask))
