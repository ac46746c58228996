"""Smaller members of the DPO family, as TRL's DPOTrainer ``loss_type`` values.

Notation: s_w = log π_θ(y_w) − log π_ref(y_w), s_l likewise (summed over response tokens),
Δ = s_w − s_l; every input and output tensor is [B]. Each loss needs only the reference pair
unless its docstring says otherwise; β > 0 defaults to 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from selm.objectives.base import (
    PreferenceBatch,
    register_objective,
    validate_positive,
    validate_range,
)
from selm.objectives.common import (
    LENGTHS,
    REFERENCE_PAIR,
    ImplicitRewardObjective,
    per_token,
)


@register_objective("sigmoid_norm")
class SigmoidNorm(ImplicitRewardObjective):
    r"""Length-normalized DPO (TRL ``loss_type="sigmoid_norm"``; SimPO-style normalization,
    https://arxiv.org/abs/2405.14734, but keeping the reference).

    .. math::

        L = -\log\sigma\left(\beta\left(\frac{s_w}{|y_w|} - \frac{s_l}{|y_l|}\right)\right)

    Also reads the response lengths. Args: beta (default 0.1).
    """

    requires = REFERENCE_PAIR | LENGTHS

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        margin = per_token(chosen, batch.chosen_lengths) - per_token(rejected, batch.rejected_lengths)
        return -F.logsigmoid(self.beta * margin)


@register_objective("nca_pair")
class NCAPair(ImplicitRewardObjective):
    r"""Noise Contrastive Alignment, pairwise form, https://arxiv.org/abs/2402.05369.

    .. math::

        L = -\log\sigma(\beta s_w) - \tfrac12\log\sigma(-\beta s_w) - \tfrac12\log\sigma(-\beta s_l)

    Optimizes absolute rewards, so (unlike DPO) the chosen likelihood is pushed up, not only the
    margin. Args: beta (default 0.1).
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        reward_w, reward_l = self.beta * chosen, self.beta * rejected
        return -F.logsigmoid(reward_w) - 0.5 * F.logsigmoid(-reward_w) - 0.5 * F.logsigmoid(-reward_l)


@register_objective("bco_pair")
class BCOPair(ImplicitRewardObjective):
    r"""Binary Classifier Optimization on pairs, https://arxiv.org/abs/2404.04656.

    .. math::

        L = -\log\sigma(\beta s_w) - \log\sigma(-\beta s_l)

    The chosen reward is classified positive and the rejected one negative. TRL ≤ 0.19 also
    subtracted a running mean δ of the rewards; current TRL, and this, do not.
    Args: beta (default 0.1).
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return -F.logsigmoid(self.beta * chosen) - F.logsigmoid(-self.beta * rejected)


@register_objective("sppo_hard")
class SPPOHard(ImplicitRewardObjective):
    r"""Self-Play Preference Optimization with hard labels, https://arxiv.org/abs/2405.00675.

    .. math::

        L = \left(s_w - \frac{1}{2\beta}\right)^2 + \left(s_l + \frac{1}{2\beta}\right)^2

    The winner's log-ratio is regressed onto +1/(2β) and the loser's onto −1/(2β) (win
    probabilities 1 and 0). Args: beta (default 0.1).
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        target = 1 / (2 * self.beta)
        return (chosen - target) ** 2 + (rejected + target) ** 2


@register_objective("apo_zero")
class APOZero(ImplicitRewardObjective):
    r"""Anchored Preference Optimization, zero variant, https://arxiv.org/abs/2408.06266.

    .. math::

        L = (1 - \sigma(\beta s_w)) + \sigma(\beta s_l)

    Raises the chosen and lowers the rejected likelihood: for when the chosen outputs are better
    than the model's own. Args: beta (default 0.1).
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return 1 - torch.sigmoid(self.beta * chosen) + torch.sigmoid(self.beta * rejected)


@register_objective("apo_down")
class APODown(ImplicitRewardObjective):
    r"""Anchored Preference Optimization, down variant, https://arxiv.org/abs/2408.06266.

    .. math::

        L = \sigma(\beta s_w) + (1 - \sigma(\beta\Delta))

    Lowers both likelihoods while widening the margin: for when the model is better than the
    chosen outputs. Args: beta (default 0.1).
    """

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        return torch.sigmoid(self.beta * chosen) + 1 - torch.sigmoid(self.beta * (chosen - rejected))


@register_objective("exo_pair")
class EXOPair(ImplicitRewardObjective):
    r"""Efficient Exact Optimization, pairwise form, https://arxiv.org/abs/2402.00856.

    .. math::

        L = \sigma(\beta\Delta)\,(\log\sigma(\beta\Delta) - \log(1-\varepsilon))
          + \sigma(-\beta\Delta)\,(\log\sigma(-\beta\Delta) - \log\varepsilon)

    the reverse KL from the model's pair preference (σ(βΔ), σ(−βΔ)) to the smoothed label
    (1−ε, ε); ε = 0 would make the target degenerate (log 0).

    Args:
        beta: β > 0. Default 0.1.
        label_smoothing: ε in (0, 0.5). Default 1e-3 (the EXO recommendation).
    """

    def __init__(self, beta: float = 0.1, label_smoothing: float = 1e-3) -> None:
        super().__init__(beta)
        validate_range(self.name, "label_smoothing", label_smoothing, 0.0, 0.5, low_open=True)
        self.label_smoothing = float(label_smoothing)

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        z = self.beta * (chosen - rejected)
        eps = self.label_smoothing
        return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
                + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps)))


@register_objective("discopop")
class DiscoPOP(ImplicitRewardObjective):
    r"""DiscoPOP, the log-ratio modulated loss found by LLM-driven discovery,
    https://arxiv.org/abs/2406.08414 (eq. 5).

    .. math::

        z = \beta\Delta, \quad m = \sigma(z/\tau), \quad L = (1-m)\,(-\log\sigma(z)) + m\,e^{-z}

    A logistic loss for negative z and an exponential one for positive z, blended smoothly.
    m·e^{−z} is computed as exp(log σ(z/τ) − z): for very negative z, e^{−z} overflows while
    m underflows to 0, and their product would be NaN.

    Args:
        beta: β > 0. Default 0.1.
        tau: τ > 0, temperature of the blend. Default 0.05.
    """

    def __init__(self, beta: float = 0.1, tau: float = 0.05) -> None:
        super().__init__(beta)
        validate_positive(self.name, tau=tau)
        self.tau = float(tau)

    def loss(self, chosen: torch.Tensor, rejected: torch.Tensor,
             batch: PreferenceBatch) -> torch.Tensor:
        z = self.beta * (chosen - rejected)
        logistic = -F.logsigmoid(z) * torch.sigmoid(-z / self.tau)
        return logistic + torch.exp(F.logsigmoid(z / self.tau) - z)
