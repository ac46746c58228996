"""EXPERIMENTAL: pairwise normalized gradients, the mitigation of gradient entanglement suggested by
Yuan et al. 2024 (https://arxiv.org/abs/2410.13828, section on "pairwise normalized gradient
descent"; the authors publish no implementation, so this form is derived, see ALGORITHMS.md 5.2a).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selm.objectives.base import ObjectiveOutput, PreferenceBatch, register_objective
from selm.objectives.common import REFERENCE_PAIR, ImplicitRewardObjective, logratios

GRAD_NORMS = frozenset({"chosen_grad_norms", "rejected_grad_norms"})


@register_objective("normalized_margin")
class NormalizedMargin(ImplicitRewardObjective):
    r"""Margin loss whose update direction is g_w/‖g_w‖ − g_l/‖g_l‖ per pair. **Experimental.**

    .. math::

        m = \frac{\log\pi_\theta(y_w) - \log\pi_{ref}(y_w)}{\lVert g_w\rVert}
          - \frac{\log\pi_\theta(y_l) - \log\pi_{ref}(y_l)}{\lVert g_l\rVert},
        \qquad L = -\log\sigma(\beta m)

    with g = ∇θ log π_θ(y|x) and the norms treated as constants (detached), so

    .. math::

        \nabla_\theta L = -\beta\,\sigma(-\beta m)\,\Big(\frac{g_w}{\lVert g_w\rVert} - \frac{g_l}{\lVert g_l\rVert}\Big)

    To first order the chosen log-prob then never falls and the rejected one never rises
    (Δ log π_w ∝ ‖g_w‖(1 − cos), Δ log π_l ∝ −‖g_l‖(1 − cos)), whatever the two norms: the
    entanglement of DPO's direction g_w − g_l is removed. Differences from DPO to keep in mind:
    the weight σ(−βm) is taken at the normalized margin (near ½ when the norms are large), and
    the update has unit scale per pair, so the learning rate must be larger than DPO's by about
    the typical ‖g‖ (the diagnostics log ``diag/grad_norm_chosen``).

    Cost: the trainer computes ‖g_w‖ and ‖g_l‖ of every training pair with one extra forward and
    one backward per sequence (roughly 2× a plain step for B = 1, B+1× for a micro-batch of B).

    Inputs: policy/reference chosen/rejected summed log-probs and chosen/rejected gradient norms,
    [B] each. Output losses: [B]. Metrics: TRL's with rewards β·s (unnormalized), plus
    ``normalized_margin/margin`` (mean m).

    Args:
        beta: β > 0. Default 0.1.
    """

    requires = REFERENCE_PAIR | GRAD_NORMS
    experimental = True

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor, batch: PreferenceBatch) -> torch.Tensor:
        return -F.logsigmoid(self.beta * self.margin(chosen, rejected, batch))

    @staticmethod
    def margin(chosen: torch.Tensor, rejected: torch.Tensor, batch: PreferenceBatch) -> torch.Tensor:
        """m = s_w/‖g_w‖ − s_l/‖g_l‖: [B]; a zero norm counts as 1 (that term has no gradient anyway)."""
        def safe(norms: torch.Tensor) -> torch.Tensor:
            return torch.where(norms > 0, norms, torch.ones_like(norms)).to(chosen.dtype)

        return chosen / safe(batch.chosen_grad_norms) - rejected / safe(batch.rejected_grad_norms)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        out = super().compute(batch)
        chosen, rejected = logratios(batch)
        out.metrics["normalized_margin/margin"] = self.margin(chosen, rejected, batch).detach().mean()
        return out
