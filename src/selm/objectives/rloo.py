"""RLOO's policy loss as TRL computes it: PPO-clip on the sequence-level ratio."""

from __future__ import annotations

from selm.objectives.base import Objective, ObjectiveOutput, register_objective
from selm.objectives.ppo_clip import clip_metrics, clipped_surrogate, validate_clip
from selm.objectives.rollout import RolloutBatch, RolloutMixin


@register_objective("rloo")
class RLOOLoss(RolloutMixin, Objective):
    r"""RLOO, Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740, with TRL 1.16's RLOOTrainer loss.

    .. math::

        \log\rho_i = \sum_t m_t\log\pi_\theta(y_t) - \sum_t m_t\log\pi_{old}(y_t) \qquad
        L_i = -\min\big(\rho_i\hat A_i,\ \operatorname{clip}(\rho_i, 1-\varepsilon_{low}, 1+\varepsilon_{high})\hat A_i\big)

    one loss per response, averaged over responses (``loss_normalizer = "sequences"``). Â_i is the
    ``rloo`` estimator's leave-one-out advantage, which already holds the KL (k1 in the reward):
    no reference is read here. With one update per rollout ρ = 1 and this is REINFORCE with the
    leave-one-out baseline. Â_i is read off the response's first token (the estimator repeats a
    sequence advantage over its tokens; an empty response has Â = 0 there).

    Inputs: policy and sampling per-token log-probs, advantages and mask, [B, T]. Output losses:
    [B]. Metrics: TRL's ``clip_ratio/low_mean``, ``clip_ratio/high_mean``,
    ``clip_ratio/region_mean``, as fractions of responses.

    Args:
        epsilon_low: ε_low in [0, 1). Default 0.2 (TRL's ``epsilon``).
        epsilon_high: ε_high ≥ 0. Default 0.2.
    """

    requires = frozenset({"sampling_token_logps", "advantages"})

    def __init__(self, epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> None:
        validate_clip(self.name, epsilon_low, epsilon_high)
        self.epsilon_low = float(epsilon_low)
        self.epsilon_high = float(epsilon_high)

    def compute(self, batch: RolloutBatch) -> ObjectiveOutput:
        mask = batch.mask
        log_ratio = (batch.policy_token_logps * mask).sum(-1) - (batch.sampling_token_logps * mask).sum(-1)
        losses, low, high = clipped_surrogate(log_ratio, batch.advantages[:, 0], self.epsilon_low, self.epsilon_high)
        return ObjectiveOutput(losses=losses, metrics=clip_metrics(low, high, mask.new_ones(batch.batch_size)))
