"""TDPO (Zeng et al. 2024): DPO with a sequential, token-level KL term in the logit."""

from __future__ import annotations

import torch

from selm.objectives.base import (
    PreferenceBatch,
    register_objective,
    validate_nonnegative,
)
from selm.objectives.common import (
    REFERENCE_PAIR,
    ImplicitRewardObjective,
    smoothed_logistic_loss,
)


class TokenLevelDPO(ImplicitRewardObjective):
    r"""Shared part of TDPO1 and TDPO2, Token-level DPO https://arxiv.org/abs/2404.11999.

    .. math::

        L = -\log\sigma(\beta\,(h - \delta))

    with h the DPO logit (see ``DPO``) and δ a difference of sequential KLs,
    SeqKL(x, y) = Σ_t KL(π_ref(·|x, y_<t) ‖ π_θ(·|x, y_<t)) over the response tokens of y
    (``chosen_seq_kl``, ``rejected_seq_kl``); subclasses define δ in ``kl_penalty``.

    Logged rewards are TRL's β·s (comparable across objectives); the TDPO repo logs
    β·(s + SeqKL) instead. Own metrics: ``kl/chosen``, ``kl/rejected``, ``kl/margin``
    (rejected − chosen).
    """

    requires = REFERENCE_PAIR | {"chosen_seq_kl", "rejected_seq_kl"}

    def kl_penalty(self, batch: PreferenceBatch) -> torch.Tensor:  # pragma: no cover - abstract
        """δ: [B]."""
        raise NotImplementedError

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return smoothed_logistic_loss(self.beta * (chosen - rejected - self.kl_penalty(batch)))

    def extra_metrics(self, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
        chosen, rejected = batch.chosen_seq_kl.detach(), batch.rejected_seq_kl.detach()
        return {"kl/chosen": chosen.mean(), "kl/rejected": rejected.mean(),
                "kl/margin": (rejected - chosen).mean()}


@register_objective("tdpo1")
class TDPO1(TokenLevelDPO):
    r"""TDPO1, https://arxiv.org/abs/2404.11999: δ = SeqKL(x, y_l) − SeqKL(x, y_w).

    .. math::

        L = -\log\sigma\big(\beta\,(h - (\mathrm{SeqKL}(x, y_l) - \mathrm{SeqKL}(x, y_w)))\big)

    The TDPO authors recommend it for low learning rates.

    Inputs: policy/reference chosen/rejected summed log-probs and chosen/rejected SeqKL, [B] each.
    Output losses: [B].

    Args:
        beta: β > 0. Default 0.1.
    """

    def kl_penalty(self, batch: PreferenceBatch) -> torch.Tensor:
        return batch.rejected_seq_kl - batch.chosen_seq_kl


@register_objective("tdpo2")
class TDPO2(TokenLevelDPO):
    r"""TDPO2, https://arxiv.org/abs/2404.11999: δ = α·(SeqKL(x, y_l) − sg[SeqKL(x, y_w)]).

    .. math::

        L = -\log\sigma\big(\beta\,(h - \alpha\,(\mathrm{SeqKL}(x, y_l) - \mathrm{sg}[\mathrm{SeqKL}(x, y_w)]))\big)

    sg is stop-gradient: the chosen KL shifts the logit but is not itself optimized, which the
    authors found more stable. Recommended for higher learning rates.

    Inputs: policy/reference chosen/rejected summed log-probs and chosen/rejected SeqKL, [B] each.
    Output losses: [B].

    Args:
        beta: β > 0. Default 0.1.
        alpha: α >= 0, weight of the KL difference. Default 0.5.
    """

    def __init__(self, beta: float = 0.1, alpha: float = 0.5) -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, alpha=alpha)
        self.alpha = float(alpha)

    def kl_penalty(self, batch: PreferenceBatch) -> torch.Tensor:
        return self.alpha * (batch.rejected_seq_kl - batch.chosen_seq_kl.detach())
