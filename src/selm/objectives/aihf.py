"""AIHF (Li et al. 2024): one stage of preference and demonstration learning, DPO / self-play form."""

from __future__ import annotations

import torch

from selm.objectives.base import (
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_nonnegative,
)
from selm.objectives.common import (
    REFERENCE_PAIR,
    ImplicitRewardObjective,
    logratios,
    reward_metrics,
    smoothed_logistic_loss,
)
from selm.objectives.fields import PREFERENCE_FIELDS, FieldSpec, ReferenceUse, Source

# Per pair, 1.0 for a demonstration pair (chosen = a demonstration, rejected = a sample y′ of the
# round-start policy) and 0.0 for a preference pair: the loop writes it, or a dataset column of
# this name carries it for `selm train`.
DEMONSTRATION_FLAG = PREFERENCE_FIELDS.register(
    FieldSpec("is_demonstration", Source.PAIR_VALUE, "demonstration", None, ReferenceUse.NONE, ("B",)))


@register_objective("aihf")
class AIHF(ImplicitRewardObjective):
    r"""Alignment with Integrated Human Feedback, DPO / self-play instantiation,
    https://arxiv.org/abs/2406.06874.

    AIHF fits one reward r_θ to preferences and demonstrations at once, the policy being the
    KL-regularised optimum of r_θ. With DPO's reparametrisation r_θ = β·log π_θ/π_ref the
    preference part is DPO, and the demonstration part (maximum-entropy IRL, whose gradient is
    E_demo ∇r − E_{y∼π} ∇r) becomes the self-play logistic loss of SPIN between a demonstration
    y_d and a sample y′ of the round-start policy π_t (``reference: round_start``):

    .. math::

        L = w_p\,\mathbb{E}_{Pref}\big[-\log\sigma(\beta h)\big]
          + w_d\,\mathbb{E}_{Demo}\big[-\log\sigma\big(\beta\,(s(y_d) - s(y'))\big)\big]

    with h the DPO logit and s(y) = log π_θ(y) − log π_ref(y). Both terms have the same logistic
    form, so a batch mixes two kinds of pairs: preference pairs (y_w, y_l) and demonstration
    pairs (y_d as chosen, y′ as rejected), marked by ``is_demonstration``. Pair i's loss is
    w_kind(i)·(−log σ(β h_i)); the batch mean weighs each kind by its share of the pairs (the loop
    builds one demonstration pair and at most one preference pair per prompt). w_d = 0 on a batch
    of preference pairs is exactly DPO.

    The DPO / self-play form is the reconstruction of ALGORITHMS-2.md §8 from the paper's
    abstract and reviews; its full text was not available to check the weights' placement against.

    Inputs: policy/reference chosen/rejected summed log-probs and ``is_demonstration``, [B] each.
    Output losses: [B]. Own metrics: ``aihf/demonstration_share`` (share of demonstration pairs),
    ``loss/preference`` and ``loss/demonstration`` (each kind's weighted mean loss; 0 when the
    batch holds none of that kind).

    Args:
        beta: β > 0. Default 0.1.
        preference_weight: w_p >= 0. Default 1.0.
        demonstration_weight: w_d >= 0. Default 1.0.
    """

    requires = REFERENCE_PAIR | {DEMONSTRATION_FLAG.name}

    def __init__(self, beta: float = 0.1, preference_weight: float = 1.0, demonstration_weight: float = 1.0) -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, preference_weight=preference_weight, demonstration_weight=demonstration_weight)
        self.preference_weight = float(preference_weight)
        self.demonstration_weight = float(demonstration_weight)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        chosen, rejected = logratios(batch)
        demo = batch.is_demonstration.detach().to(chosen.dtype)  # a label, never differentiated
        weights = self.demonstration_weight * demo + self.preference_weight * (1 - demo)
        logistic = smoothed_logistic_loss(self.beta * (chosen - rejected))
        losses = weights * logistic
        metrics = reward_metrics(batch, self.beta * chosen, self.beta * rejected)
        detached = losses.detach()
        metrics.update({"aihf/demonstration_share": demo.mean(),
                        "loss/preference": _mean_where(detached, 1 - demo),
                        "loss/demonstration": _mean_where(detached, demo)})
        return ObjectiveOutput(losses=losses, metrics=metrics)


def _mean_where(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ m·x / max(Σ m, 1): [B], [B] -> scalar."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)
