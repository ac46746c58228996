"""The Bradley–Terry loss of reward-model training."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    r"""Per-pair Bradley–Terry loss with an optional margin and label smoothing.

    .. math::

        z = r_c - r_r - m, \qquad L = -(1-\varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z)

    The margin m (Llama 2, https://arxiv.org/abs/2307.09288, section 3.2.2) asks the reward gap of
    clearly separated pairs to be larger; ε is the assumed probability that a label is flipped.

    Args:
        chosen_rewards: [B] scalar rewards r_c of the chosen responses.
        rejected_rewards: [B] rewards r_r of the rejected responses.
        margin: [B] per-pair margins m (reward units), or None for 0.
        label_smoothing: ε in [0, 0.5).

    Returns:
        [B] losses (nats); the batch loss is their mean.
    """
    z = chosen_rewards - rejected_rewards
    if margin is not None:
        z = z - margin.to(z.dtype)
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
