"""The supervised (negative log-likelihood) loss on the chosen response."""

from __future__ import annotations

from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
)
from selm.objectives.common import logp_metrics, per_token


@register_objective("sft")
class SFT(Objective):
    r"""Negative log-likelihood of the chosen response, per token (TRL ``loss_type="sft"``).

    .. math::

        L = -\frac{\log\pi_\theta(y_w)}{|y_w|}

    Usually a weighted part of a sum, e.g. RPO (https://arxiv.org/abs/2404.19733) or MPO
    (``sigmoid`` 0.8 + ``bco_pair`` 0.2 + ``sft`` 1.0). Each example's loss is its own token mean,
    so the batch loss is the mean over examples of per-example means. TRL's and SimPO's SFT term is
    a token mean over the whole batch (Σ NLL / Σ|y_w|), which weights long responses more; the
    two agree when all chosen responses have the same length.

    Inputs: policy chosen summed log-probs and chosen lengths, [B] each. Output losses: [B].
    No hyperparameters; no reference.
    """

    requires = frozenset({"chosen_lengths"})

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        losses = -per_token(batch.policy_chosen_logps, batch.chosen_lengths)
        return ObjectiveOutput(losses=losses, metrics=logp_metrics(batch))
