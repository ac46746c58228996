r"""Per-token estimators of KL(π_θ ‖ π_ref) from sampled tokens (Schulman, "Approximating KL
divergence", http://joschu.net/blog/kl-approx.html).

Each takes the per-token log-ratio d_t = log π_θ(y_t | x, y_<t) − log π_ref(y_t | x, y_<t) of a
sampled token, [B, T] in nats, and returns [B, T] in nats (the caller masks padding):

.. math::

    k_1 = d \qquad k_2 = \tfrac12 d^2 \qquad k_3 = e^{-d} + d - 1 \;(\ge 0)

With y ∼ π_θ (on-policy samples), as **values**: k1 and k3 are unbiased estimates of
KL(π_θ‖π_ref) (k3 because E[π_ref/π_θ] = 1), k2 is biased (exact to second order in d).
As **losses** (the sample fixed, the gradient through log π_θ only), ∇k = k'(d)·∇log π_θ and:

- k1: E[∇log π_θ] = 0, so its expected gradient is zero: as a loss it does nothing on average.
  Put k1 in the reward instead (``r_t = −β·k1_t + …``), where REINFORCE gives E[d·∇log π_θ].
- k2: E[d·∇log π_θ] = ∇KL(π_θ‖π_ref): the right gradient.
- k3: E[(1 − e^{−d})·∇log π_θ] = −Σ_y π_ref(y)·∇log π_θ(y) = ∇KL(π_ref‖π_θ): the gradient of the
  reverse KL, which agrees with the right one to first order near π_θ = π_ref. It is GRPO's (and
  TRL's only) KL loss. At π_θ = π_ref its value and its gradient are both 0.

Sources: OpenRLHF ``openrlhf/models/utils.py`` ``compute_approx_kl`` (which also clamps d to ±10;
selm does not, as TRL does not); verl ``core_algos.py`` ``kl_penalty``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]


def kl_k1(log_ratio: torch.Tensor) -> torch.Tensor:
    """k1 = d: [B, T] -> [B, T]. Unbiased value, zero expected gradient as a loss."""
    return log_ratio


def kl_k2(log_ratio: torch.Tensor) -> torch.Tensor:
    """k2 = ½·d²: [B, T] -> [B, T]. Biased value, the right gradient as a loss."""
    return 0.5 * log_ratio.square()


def kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """k3 = exp(−d) + d − 1 ≥ 0: [B, T] -> [B, T]. Unbiased value; as a loss, the gradient of
    KL(π_ref‖π_θ). Written as expm1(−d) + d, which is ≥ 0 in floating point too (exp(−d) − 1
    rounded near 1 is not)."""
    return torch.expm1(-log_ratio) + log_ratio


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def token_kl(policy_token_logps: torch.Tensor, reference_token_logps: torch.Tensor,
             estimator: KLEstimator) -> torch.Tensor:
    """The named estimator of d = policy − reference: [B, T], [B, T] -> [B, T] nats (unmasked)."""
    return KL_ESTIMATORS[estimator](policy_token_logps - reference_token_logps)
