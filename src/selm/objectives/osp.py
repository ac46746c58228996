"""OSP (Zhai et al. 2024): DPO with soft, self-judged preference labels (SPCE loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selm.objectives.base import PreferenceBatch, register_objective
from selm.objectives.common import REFERENCE_PAIR, ImplicitRewardObjective


@register_objective("osp", "spce")
class OSP(ImplicitRewardObjective):
    r"""Online Self-Preferring language models' soft-preference cross-entropy,
    https://arxiv.org/abs/2405.14103.

    .. math::

        L = -\,p\log\sigma(\beta h) - (1-p)\log\sigma(-\beta h)

    with h the DPO logit (see ``DPO``) and p = P(y_w ≻ y_l) the pair's soft label
    (``label_probs``). In the loop, p comes from the policy judging its own samples
    (``self_judge``: p = σ((s_w − s_l)/τ) with s the round-start policy's mean token log-prob);
    the paper's self-judgement prompts the model as a judge, and its exact form of p was not
    checked (ALGORITHMS.md). p = 1 is DPO; a constant p = 1 − ε is cDPO.

    Inputs: policy/reference chosen/rejected summed log-probs and label_probs, [B] each.
    Output losses: [B]. Own metric: ``osp/label_prob`` (mean p).

    Args:
        beta: β > 0. Default 0.1.
    """

    requires = REFERENCE_PAIR | {"label_probs"}

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        logits = self.beta * (chosen - rejected)
        p = batch.label_probs
        return -p * F.logsigmoid(logits) - (1 - p) * F.logsigmoid(-logits)

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        return {"osp/label_prob": batch.label_probs.detach().mean()}
