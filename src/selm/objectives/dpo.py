"""DPO (Rafailov et al. 2023) with optional conservative label smoothing (cDPO)."""

from __future__ import annotations

import torch

from selm.objectives.base import PreferenceBatch, register_objective, validate_range
from selm.objectives.common import ImplicitRewardObjective, smoothed_logistic_loss


@register_objective("dpo", "sigmoid")
class DPO(ImplicitRewardObjective):
    r"""Direct Preference Optimization, https://arxiv.org/abs/2305.18290 (TRL ``loss_type="sigmoid"``).

    .. math::

        h = (\log\pi_\theta(y_w) - \log\pi_{ref}(y_w)) - (\log\pi_\theta(y_l) - \log\pi_{ref}(y_l))

        L = -(1-\varepsilon)\log\sigma(\beta h) - \varepsilon\log\sigma(-\beta h)

    With ε > 0 this is cDPO (Mitchell 2023, "A note on DPO with noisy preferences",
    https://ericmitchell.ai/cdpo.pdf): the labels are assumed flipped with probability ε. Recent
    TRL ignores ``label_smoothing`` for ``sigmoid``; here ε = 0 (the default) gives that loss.

    Inputs: policy/reference chosen/rejected summed log-probs, [B] each. Output losses: [B].

    Args:
        beta: β > 0. Default 0.1.
        label_smoothing: ε in [0, 0.5). Default 0.
    """

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__(beta)
        validate_range(self.name, "label_smoothing", label_smoothing, 0.0, 0.5)
        self.label_smoothing = float(label_smoothing)

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return smoothed_logistic_loss(self.beta * (chosen - rejected), self.label_smoothing)
