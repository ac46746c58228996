"""The hinge loss on DPO's logit (SLiC-HF, RSO)."""

from __future__ import annotations

import torch

from selm.objectives.base import PreferenceBatch, register_objective
from selm.objectives.common import ImplicitRewardObjective


@register_objective("hinge")
class Hinge(ImplicitRewardObjective):
    r"""Hinge loss, SLiC-HF https://arxiv.org/abs/2305.10425 as used by RSO
    https://arxiv.org/abs/2309.06657 (TRL ``loss_type="hinge"``).

    .. math::

        L = \max(0,\ 1 - \beta h)

    with h the DPO logit (see ``DPO``): 1/β is the margin that h must reach. SLiC-HF itself puts
    the hinge on log π(y_w) − log π(y_l) without a reference; this is TRL's reference-normalized form.

    Inputs: policy/reference chosen/rejected summed log-probs, [B] each. Output losses: [B].

    Args:
        beta: β > 0. Default 0.1.
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return torch.relu(1 - self.beta * (chosen - rejected))
