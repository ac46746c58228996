"""IPO (Azar et al. 2023): a squared loss that regresses the log-ratio margin onto 1/(2β)."""

from __future__ import annotations

import torch

from selm.objectives.base import PreferenceBatch, register_objective
from selm.objectives.common import (
    LENGTHS,
    REFERENCE_PAIR,
    ImplicitRewardObjective,
    per_token,
)


@register_objective("ipo")
class IPO(ImplicitRewardObjective):
    r"""Identity Preference Optimization, https://arxiv.org/abs/2310.12036 (TRL ``loss_type="ipo"``).

    .. math::

        \bar h = \frac{s_w}{|y_w|} - \frac{s_l}{|y_l|}, \qquad L = \left(\bar h - \frac{1}{2\beta}\right)^2

    with s = log π_θ(y) − log π_ref(y) summed over response tokens. The per-token normalization
    follows TRL (confirmed there with the IPO authors); the paper writes the unnormalized margin.
    β plays the role of the paper's 1/τ: larger β, smaller target margin.

    Inputs: policy/reference chosen/rejected summed log-probs and response lengths, [B] each.
    Output losses: [B].

    Args:
        beta: β > 0. Default 0.1.
    """

    requires = REFERENCE_PAIR | LENGTHS

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        margin = per_token(chosen, batch.chosen_lengths) - per_token(rejected, batch.rejected_lengths)
        return (margin - 1 / (2 * self.beta)) ** 2
