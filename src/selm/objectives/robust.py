"""Robust DPO (Chowdhury et al. 2024): an unbiased DPO loss under symmetric label noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selm.objectives.base import PreferenceBatch, register_objective
from selm.objectives.dpo import DPO


@register_objective("robust")
class RobustDPO(DPO):
    r"""Provably Robust DPO (rDPO), https://arxiv.org/abs/2403.00409 (TRL ``loss_type="robust"``).

    .. math::

        L = \frac{-(1-\varepsilon)\log\sigma(\beta h) + \varepsilon\log\sigma(-\beta h)}{1 - 2\varepsilon}

    with h the DPO logit (see ``DPO``). Unlike cDPO, the ε term enters with a plus sign: the loss
    is an unbiased estimate of the clean-label DPO loss when labels flip with probability ε.

    Inputs: policy/reference chosen/rejected summed log-probs, [B] each. Output losses: [B].

    Args:
        beta: β > 0. Default 0.1.
        label_smoothing: ε in [0, 0.5), the label flip rate. Default 0 (then equal to DPO).
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        z = self.beta * (chosen - rejected)
        eps = self.label_smoothing
        return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
