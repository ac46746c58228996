"""Shared fixtures: random preference batches with every PreferenceBatch field filled."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from selm.objectives import PreferenceBatch

B = 7


def random_fields(seed: int, dtype: torch.dtype = torch.float64, batch_size: int = B) -> dict[str, torch.Tensor]:
    """Every PreferenceBatch field, [batch_size] each ([batch_size, 4] for the online ones, [batch_size, 16]
    for FPO's features), at realistic scales.

    Summed log-probs are −(per-token NLL in [0.2, 3]) × length (lengths 1..60); reference log-probs
    differ from the policy's by N(0, 15) so that β·h spans the interesting range of σ for
    β ≈ 0.1–0.3; sequential KLs are in [0, 20].
    """
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch_size, generator=g, dtype=torch.float64)

    lengths = {k: torch.randint(1, 61, (batch_size,), generator=g).to(torch.float64)
               for k in ("chosen", "rejected", "explore")}
    policy = {k: -uniform(0.2, 3.0) * lengths[k] for k in lengths}
    reference = {k: policy[k] + 15 * torch.randn(batch_size, generator=g, dtype=torch.float64)
                 for k in lengths}
    values = {
        "policy_chosen_logps": policy["chosen"],
        "policy_rejected_logps": policy["rejected"],
        "reference_chosen_logps": reference["chosen"],
        "reference_rejected_logps": reference["rejected"],
        "chosen_lengths": lengths["chosen"],
        "rejected_lengths": lengths["rejected"],
        "policy_explore_logps": policy["explore"],
        "reference_explore_logps": reference["explore"],
        "chosen_seq_kl": uniform(0.0, 20.0),
        "rejected_seq_kl": uniform(0.0, 20.0),
        # SAIL route codes 0..3, soft labels, A-LoL advantages, and k = 4 HyPO online samples.
        "routes": torch.randint(0, 4, (batch_size,), generator=g).to(torch.float64),
        "label_probs": uniform(0.0, 1.0),
        "chosen_advantages": torch.randn(batch_size, generator=g, dtype=torch.float64),
        "rejected_advantages": torch.randn(batch_size, generator=g, dtype=torch.float64),
        "policy_online_logps": -uniform(1.0, 30.0)[:, None] * torch.rand(batch_size, 4, generator=g, dtype=torch.float64),
        "reference_online_logps": -uniform(1.0, 30.0)[:, None] * torch.rand(batch_size, 4, generator=g, dtype=torch.float64),
        "chosen_grad_norms": uniform(0.5, 50.0),
        "rejected_grad_norms": uniform(0.5, 50.0),
        # AIHF's pair kinds (an objective's own, registered field): 1 demonstration, 0 preference.
        "is_demonstration": torch.randint(0, 2, (batch_size,), generator=g).to(torch.float64),
    }
    # FPO's pooled sparse-autoencoder activations (registered fields), [batch_size, 16]: non-negative, many zeros.
    for name in ("policy_chosen_features", "policy_rejected_features", "reference_chosen_features",
                 "reference_rejected_features"):
        values[name] = torch.relu(torch.randn(batch_size, 16, generator=g, dtype=torch.float64))
    return {k: v.to(dtype) for k, v in values.items()}


@pytest.fixture
def make_batch() -> Callable[..., PreferenceBatch]:
    """``make_batch(seed, dtype=float64, only=None, requires_grad=False)``.

    ``only``: keep just these optional fields (the two policy log-probs are always present).
    ``requires_grad``: make every floating field a leaf that requires grad.
    """

    def make(seed: int, dtype: torch.dtype = torch.float64, only: frozenset[str] | None = None,
             requires_grad: bool = False) -> PreferenceBatch:
        values = random_fields(seed, dtype)
        mandatory = {"policy_chosen_logps", "policy_rejected_logps"}
        if only is not None:
            values = {k: v for k, v in values.items() if k in only or k in mandatory}
        if requires_grad:
            values = {k: v.requires_grad_() for k, v in values.items()}
        return PreferenceBatch.from_values(values)

    return make
