"""GRPO's policy loss: per-token PPO-clip, TRL's four aggregations, KL to the reference, entropy bonus."""

from __future__ import annotations

import torch

from selm.errors import ConfigError
from selm.objectives.base import Objective, ObjectiveOutput, register_objective, validate_nonnegative
from selm.objectives.kl import KL_ESTIMATORS, token_kl
from selm.objectives.ppo_clip import clip_metrics, clipped_surrogate, validate_clip
from selm.objectives.rollout import (
    LOSS_NORMALIZERS,
    LossNormalizer,
    RolloutBatch,
    RolloutMixin,
    aggregate_token_losses,
    check_loss_type,
    masked_mean,
)


@register_objective("grpo")
class GRPOLoss(RolloutMixin, Objective):
    r"""GRPO, Shao et al. 2024 (DeepSeekMath), https://arxiv.org/abs/2402.03300, with TRL's options.

    Per response token, with ρ_t = exp(log π_θ − log π_old) against the sampling policy and the
    advantage Â_t of an advantage estimator (GRPO's, Dr. GRPO's, REINFORCE++'s, ...):

    .. math::

        \ell_t = -\min\big(\rho_t\hat A_t,\ \operatorname{clip}(\rho_t, 1-\varepsilon_{low}, 1+\varepsilon_{high})\hat A_t\big)
                 + \beta\,k(\log\pi_\theta - \log\pi_{ref})_t - c\,H_t

    with k the KL estimator (``selm.objectives.kl``; GRPO's k3 by default, whose gradient at
    π_θ = π_ref is 0) and H_t the policy's entropy. A response's loss and the batch normaliser
    follow TRL's ``loss_type`` (``selm.objectives.rollout.LOSS_NORMALIZERS``):

    - ``grpo``: (1/|y_i|)·Σ_t ℓ_t, then the mean over responses (the paper's).
    - ``bnpo``: Σ_t ℓ_t, divided by each micro-batch's tokens, then averaged over micro-batches.
    - ``dr_grpo``: Σ_t ℓ_t / L_max, then the mean over responses: a constant normaliser, so a
      token's gradient does not depend on its response's length (Dr. GRPO,
      https://arxiv.org/abs/2503.20783).
    - ``dapo``: Σ_t ℓ_t, divided by the tokens of the whole optimizer step (DAPO's token mean;
      TRL's default).

    DAPO (https://arxiv.org/abs/2503.14476) is this loss with ``epsilon_high=0.28``,
    ``loss_type="dapo"`` and ``beta=0``; REINFORCE++ is it with its own advantages. β = 0 needs no
    reference model. Differences from TRL 1.16's GRPOTrainer: the KL may be k1 / k2 / k3 (TRL: k3);
    the entropy bonus is aggregated like the policy loss (TRL: a token mean per micro-batch
    whatever the ``loss_type``: equal for ``bnpo``); the ratio is always against the recorded
    sampling log-probs (TRL uses the detached current ones when it skips that pass: the same
    values).

    Inputs: policy / sampling (/ reference, / entropies) per-token tensors, advantages and mask,
    [B, T]. Output losses: [B]. Metrics (TRL's names, token means of this batch):
    ``clip_ratio/low_mean``, ``clip_ratio/high_mean``, ``clip_ratio/region_mean``, ``kl`` (β > 0),
    ``entropy`` (entropies given).

    Args:
        beta: β ≥ 0 of the KL loss. Default 0.04 (the paper's; TRL's default is 0).
        epsilon_low: ε_low in [0, 1). Default 0.2.
        epsilon_high: ε_high ≥ 0. Default 0.2 (DAPO: 0.28).
        loss_type: ``grpo`` (default), ``bnpo``, ``dr_grpo`` or ``dapo``.
        max_completion_length: L_max of ``dr_grpo``, the sampler's token budget; None otherwise.
        kl_estimator: ``k1``, ``k2`` or ``k3`` (default).
        entropy_coef: c ≥ 0 of the entropy bonus. Default 0.
    """

    def __init__(self, beta: float = 0.04, epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                 loss_type: str = "grpo", max_completion_length: int | None = None, kl_estimator: str = "k3",
                 entropy_coef: float = 0.0) -> None:
        validate_nonnegative(self.name, beta=beta, entropy_coef=entropy_coef)
        validate_clip(self.name, epsilon_low, epsilon_high)
        check_loss_type(self.name, loss_type, max_completion_length)
        if kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(f"objective '{self.name}': kl_estimator must be one of {', '.join(KL_ESTIMATORS)}, "
                              f"got {kl_estimator!r}")
        self.beta = float(beta)
        self.epsilon_low = float(epsilon_low)
        self.epsilon_high = float(epsilon_high)
        self.loss_type = loss_type
        self.max_completion_length = max_completion_length
        self.kl_estimator = kl_estimator
        self.entropy_coef = float(entropy_coef)

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        fields = {"sampling_token_logps", "advantages"}
        if self.beta > 0:
            fields.add("reference_token_logps")
        if self.entropy_coef > 0:
            fields.add("token_entropies")
        return frozenset(fields)

    @property
    def loss_normalizer(self) -> LossNormalizer:  # type: ignore[override]
        return LOSS_NORMALIZERS[self.loss_type]

    def token_losses(self, batch: RolloutBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(ℓ [B, T], metrics): the per-token loss before aggregation, and its detached metrics."""
        mask = batch.mask
        losses, low, high = clipped_surrogate(batch.policy_token_logps - batch.sampling_token_logps,
                                              batch.advantages, self.epsilon_low, self.epsilon_high)
        metrics = clip_metrics(low, high, mask)
        if self.beta > 0:
            kl = token_kl(batch.policy_token_logps, batch.reference_token_logps, self.kl_estimator)
            losses = losses + self.beta * kl
            metrics["kl"] = masked_mean(kl.detach(), mask)
        if self.entropy_coef > 0:
            losses = losses - self.entropy_coef * batch.token_entropies
        if batch.token_entropies is not None:
            metrics["entropy"] = masked_mean(batch.token_entropies.detach(), mask)
        return losses, metrics

    def compute(self, batch: RolloutBatch) -> ObjectiveOutput:
        token_losses, metrics = self.token_losses(batch)
        losses = aggregate_token_losses(token_losses, batch.mask, self.loss_type, self.max_completion_length)
        return ObjectiveOutput(losses=losses, metrics=metrics)
