"""Pieces shared by several objectives: implicit rewards, length normalization, the smoothed
logistic loss, TRL-named metrics and the base class of the reference-based DPO family.

Notation: s_w = log π_θ(y_w|x) − log π_ref(y_w|x) and s_l likewise are the (β-free) implicit
rewards, h = s_w − s_l is DPO's logit; every tensor is [B].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    validate_positive,
)

REFERENCE_PAIR = frozenset({"reference_chosen_logps", "reference_rejected_logps"})
LENGTHS = frozenset({"chosen_lengths", "rejected_lengths"})


def logratios(batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_w, s_l): [B] each, policy minus reference summed log-probs of chosen and rejected."""
    return (batch.policy_chosen_logps - batch.reference_chosen_logps,
            batch.policy_rejected_logps - batch.reference_rejected_logps)


def per_token(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """values / |y|: [B] / [B] -> [B], in the dtype of ``values``.

    Lengths arrive as int or float tensors; casting keeps a float64 loss float64. A length of 0
    (an empty response, whose summed log-prob is 0) is counted as 1, so it contributes 0 rather
    than a NaN that would poison the whole batch mean.
    """
    return values / lengths.to(values.dtype).clamp_min(1)


def smoothed_logistic_loss(logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """−(1−ε)·log σ(z) − ε·log σ(−z): [B] -> [B]; the logistic loss when ε = 0.

    ε is the assumed probability that a preference label is flipped (cDPO).
    """
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def logp_metrics(batch: PreferenceBatch) -> dict[str, torch.Tensor]:
    """``logps/chosen`` and ``logps/rejected``: batch means of the policy's summed log-probs."""
    return {"logps/chosen": batch.policy_chosen_logps.detach().mean(),
            "logps/rejected": batch.policy_rejected_logps.detach().mean()}


def reward_metrics(batch: PreferenceBatch, chosen_rewards: torch.Tensor,
                   rejected_rewards: torch.Tensor) -> dict[str, torch.Tensor]:
    """TRL's reward metrics from per-example rewards ([B] each) plus ``logp_metrics``.

    ``rewards/accuracies`` is the fraction of pairs whose chosen reward is strictly larger (a tie
    counts as wrong, as in TRL).
    """
    chosen, rejected = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).to(chosen.dtype).mean(),
        **logp_metrics(batch),
    }


class ImplicitRewardObjective(Objective):
    """Base of the losses over the implicit rewards s_w, s_l (reference-based DPO family).

    Subclasses implement ``loss``; metrics are TRL's with rewards β·s_w and β·s_l, plus whatever
    ``extra_metrics`` adds. Subclasses with more hyperparameters override ``__init__`` and call
    this one for ``beta``.

    Args:
        beta: β > 0, the inverse temperature of the implicit reward. Default 0.1 (TRL).
    """

    requires = REFERENCE_PAIR

    def __init__(self, beta: float = 0.1) -> None:
        validate_positive(self.name, beta=beta)
        self.beta = float(beta)

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:  # pragma: no cover - abstract
        """Per-example losses [B] from s_w, s_l ([B] each) and the rest of ``batch``."""
        raise NotImplementedError

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        """The objective's own detached batch-mean metrics; none by default."""
        return {}

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        chosen, rejected = logratios(batch)
        metrics = reward_metrics(batch, self.beta * chosen, self.beta * rejected)
        metrics.update(self.extra_metrics(batch))
        return ObjectiveOutput(losses=self.loss(chosen, rejected, batch), metrics=metrics)
