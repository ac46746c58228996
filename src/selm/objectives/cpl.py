"""CPL (Hejna et al. 2024): contrastive preference learning on the policy's log-likelihoods."""

from __future__ import annotations

import torch.nn.functional as F

from selm.errors import ConfigError
from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_positive,
)
from selm.objectives.common import reward_metrics


@register_objective("cpl")
class CPL(Objective):
    r"""Contrastive Preference Learning, https://arxiv.org/abs/2310.13639, as in the authors' code
    (``research/algs/cpl.py`` of ``jhejna/cpl``), with a whole response as the segment.

    .. math::

        A^\pm = \alpha\log\pi_\theta(y_{w/l}|x), \qquad
        L = -\log\frac{e^{A^+}}{e^{A^+} + e^{\lambda A^-}} = -\log\sigma(A^+ - \lambda A^-)

    The segment "advantage" is α times the summed log-likelihood; the paper discounts each step by
    γ^t, the code does not (nor does this). λ ∈ (0, 1] is the contrastive bias: λ < 1 down-weights
    the rejected response, which keeps the chosen response's likelihood from being pushed down
    with it. No reference model. The code's optional BC term is the ``sft`` objective in a
    weighted list (CPL-BC: ``[{name: cpl, contrastive_bias: 1.0}, {name: sft, weight: 1.0}]``).

    Inputs: policy chosen/rejected summed log-probs, [B] each. Output losses: [B]. Rewards
    logged are A⁺ and A⁻.

    Args:
        alpha: α > 0, temperature of the advantage. Default 0.1.
        contrastive_bias: λ in (0, 1]. Default 0.5.
    """

    def __init__(self, alpha: float = 0.1, contrastive_bias: float = 0.5) -> None:
        validate_positive(self.name, alpha=alpha, contrastive_bias=contrastive_bias)
        if contrastive_bias > 1:
            raise ConfigError(f"objective '{self.name}': contrastive_bias must be in (0, 1], got {contrastive_bias}")
        self.alpha = float(alpha)
        self.contrastive_bias = float(contrastive_bias)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        chosen = self.alpha * batch.policy_chosen_logps
        rejected = self.alpha * batch.policy_rejected_logps
        losses = -F.logsigmoid(chosen - self.contrastive_bias * rejected)
        return ObjectiveOutput(losses=losses, metrics=reward_metrics(batch, chosen, rejected))
