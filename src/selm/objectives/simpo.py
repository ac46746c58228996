"""SimPO (Meng, Xia, Chen 2024): reference-free, length-normalized DPO with a target margin."""

from __future__ import annotations

from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_nonnegative,
    validate_positive,
    validate_range,
)
from selm.objectives.common import (
    LENGTHS,
    per_token,
    reward_metrics,
    smoothed_logistic_loss,
)


@register_objective("simpo")
class SimPO(Objective):
    r"""Simple Preference Optimization, https://arxiv.org/abs/2405.14734.

    .. math::

        z = \beta\left(\frac{\log\pi_\theta(y_w)}{|y_w|} - \frac{\log\pi_\theta(y_l)}{|y_l|}\right) - \gamma

        L = -(1-\varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z)

    No reference model. γ is the margin itself; the SimPO repo configures it as
    ``gamma_beta_ratio`` = γ/β (default 0.25, so γ = 0.5 at β = 2). Logged rewards are the
    reference-free β·log π_θ(y)/|y|.

    Inputs: policy chosen/rejected summed log-probs and response lengths, [B] each.
    Output losses: [B].

    Args:
        beta: β > 0. Default 2.0.
        gamma: target reward margin γ >= 0. Default 0.5.
        label_smoothing: ε in [0, 0.5). Default 0.
    """

    requires = LENGTHS

    def __init__(self, beta: float = 2.0, gamma: float = 0.5, label_smoothing: float = 0.0) -> None:
        validate_positive(self.name, beta=beta)
        validate_nonnegative(self.name, gamma=gamma)
        validate_range(self.name, "label_smoothing", label_smoothing, 0.0, 0.5)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        chosen = self.beta * per_token(batch.policy_chosen_logps, batch.chosen_lengths)
        rejected = self.beta * per_token(batch.policy_rejected_logps, batch.rejected_lengths)
        losses = smoothed_logistic_loss(chosen - rejected - self.gamma, self.label_smoothing)
        return ObjectiveOutput(losses=losses, metrics=reward_metrics(batch, chosen, rejected))
