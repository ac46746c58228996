"""FPO (Yin et al. 2024): length-normalised preference optimization with a sparse-autoencoder feature constraint."""

from __future__ import annotations

import torch

from selm.errors import ConfigError
from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_nonnegative,
    validate_positive,
)
from selm.objectives.common import LENGTHS, REFERENCE_PAIR, per_token, reward_metrics, smoothed_logistic_loss
from selm.objectives.fields import PREFERENCE_FIELDS, FieldSpec, ReferenceUse, Source

# c̄(x, y): the sparse autoencoder's activations at the policy's layer ℓ, mean-pooled over the
# response's positions, [B, F] (F the autoencoder's width). The reference's are fixed during
# training, so they are cached once per pair like its log-probs.
FEATURE_FIELDS = tuple(PREFERENCE_FIELDS.register(FieldSpec(name, source, "features", role, use, ("B", "F")))
                       for name, source, role, use in (
                           ("policy_chosen_features", Source.POLICY, "chosen", ReferenceUse.NONE),
                           ("policy_rejected_features", Source.POLICY, "rejected", ReferenceUse.NONE),
                           ("reference_chosen_features", Source.REFERENCE, "chosen", ReferenceUse.PRECOMPUTABLE),
                           ("reference_rejected_features", Source.REFERENCE, "rejected", ReferenceUse.PRECOMPUTABLE)))


def feature_distance(policy: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """D(x, y): the mean squared difference of pooled features over I = topk(c̄_θ) ∪ topk(c̄_ref).

    Args:
        policy: [B, F] c̄_θ, pooled activations of the policy.
        reference: [B, F] c̄_ref, the reference's.
        k: features taken from each side (all F when k ≥ F).

    Returns:
        [B], squared activation units; gradient flows through ``policy`` only at the features in I
        (the choice of I itself is not differentiated).
    """
    k = min(k, policy.shape[-1])
    union = torch.zeros_like(policy, dtype=torch.bool)
    union.scatter_(-1, policy.detach().topk(k, dim=-1).indices, True)
    union.scatter_(-1, reference.topk(k, dim=-1).indices, True)
    squared = (policy - reference) ** 2 * union
    return squared.sum(-1) / union.sum(-1).to(squared.dtype)


@register_objective("fpo")
class FPO(Objective):
    r"""Feature-level constrained Preference Optimization, https://arxiv.org/abs/2411.07618 (Eq. 11).

    SimPO's length-normalised margin with a fixed offset read off the reference (no live
    reference forward), and TDPO2's constraint with the token-level KL replaced by a distance
    between sparse-autoencoder features of the policy and of the reference:

    .. math::

        u = \frac{\beta}{|y_w|}\log\pi_\theta(y_w) - \frac{\beta}{|y_l|}\log\pi_\theta(y_l)
            - \gamma_{\mathrm{ref}} - \alpha\big(\beta D(x, y_l) - \mathrm{sg}[\beta D(x, y_w)]\big)

        \gamma_{\mathrm{ref}} = \frac{\beta}{|y_w|}\log\pi_{\mathrm{ref}}(y_w) - \frac{\beta}{|y_l|}\log\pi_{\mathrm{ref}}(y_l),
        \qquad L = -\log\sigma(u)

    with D(x, y) the mean over I = topk(c̄_θ) ∪ topk(c̄_ref) of (c̄_θ,i − c̄_ref,i)²
    (``feature_distance``), c̄ the autoencoder's activations at layer ℓ mean-pooled over the
    response. γ_ref is a constant per pair (the cached reference log-probs), so the first two
    terms are length-normalised DPO. sg is stop-gradient: the chosen response's distance shifts
    the logit but is not itself pushed (TDPO2's choice, which the paper keeps).

    Logged rewards are β·(log π_θ(y) − log π_ref(y))/|y|. Own metrics: ``fpo/distance_chosen``,
    ``fpo/distance_rejected`` (batch means of D).

    Inputs: policy/reference chosen/rejected summed log-probs and lengths, [B] each; policy and
    reference pooled features of both responses, [B, F] each. Output losses: [B].

    Args:
        beta: β > 0. Default 0.1 (the paper's).
        alpha: α ≥ 0, weight of the feature constraint; 0 gives length-normalised DPO. Default 0.5.
        top_k: k ≥ 1 features from each side in D. Default 50 (the authors' code).
    """

    requires = REFERENCE_PAIR | LENGTHS | frozenset(spec.name for spec in FEATURE_FIELDS)

    def __init__(self, beta: float = 0.1, alpha: float = 0.5, top_k: int = 50) -> None:
        validate_positive(self.name, beta=beta)
        validate_nonnegative(self.name, alpha=alpha)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"objective '{self.name}': top_k must be an integer >= 1, got {top_k!r}")
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.top_k = int(top_k)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        lengths_w, lengths_l = batch.chosen_lengths, batch.rejected_lengths
        chosen = self.beta * per_token(batch.policy_chosen_logps - batch.reference_chosen_logps, lengths_w)
        rejected = self.beta * per_token(batch.policy_rejected_logps - batch.reference_rejected_logps, lengths_l)
        distance_w = feature_distance(batch.policy_chosen_features, batch.reference_chosen_features, self.top_k)
        distance_l = feature_distance(batch.policy_rejected_features, batch.reference_rejected_features, self.top_k)
        constraint = self.alpha * self.beta * (distance_l - distance_w.detach())
        losses = smoothed_logistic_loss(chosen - rejected - constraint)
        metrics = {**reward_metrics(batch, chosen, rejected), "fpo/distance_chosen": distance_w.detach().mean(),
                   "fpo/distance_rejected": distance_l.detach().mean()}
        return ObjectiveOutput(losses=losses, metrics=metrics)
