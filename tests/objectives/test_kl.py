"""The per-token KL estimators: values by hand, k3 ≥ 0 with zero value and gradient at π = π_ref,
and which one has the right gradient, checked by exact expectations over a small vocabulary."""

from __future__ import annotations

import math

import pytest
import torch

from selm.objectives.kl import kl_k1, kl_k2, kl_k3, token_kl

F64 = torch.float64
D = [-2.0, -0.5, -1e-9, 0.0, 1e-9, 0.3, 1.7]


def test_values_by_hand():
    d = torch.tensor([D], dtype=F64)
    assert kl_k1(d).tolist() == [D]
    torch.testing.assert_close(kl_k2(d), torch.tensor([[x * x / 2 for x in D]], dtype=F64), rtol=1e-15, atol=0)
    # e^{−d} + d − 1 by its Taylor series near 0 (there float64 resolves it to ~1e-25 absolute:
    # the cancellation of expm1(−d) + d), by math.exp elsewhere.
    expected = [x * x / 2 - x ** 3 / 6 if abs(x) < 1e-3 else math.exp(-x) + x - 1 for x in D]
    torch.testing.assert_close(kl_k3(d), torch.tensor([expected], dtype=F64), rtol=1e-12, atol=1e-24)


def test_k3_is_nonnegative_and_zero_only_at_equal_logps():
    d = torch.cat([torch.linspace(-20, 20, 4000, dtype=F64), torch.tensor([0.0, 1e-6, -1e-6, 1e-100], dtype=F64)])
    k3 = kl_k3(d)
    assert bool((k3 >= 0).all())
    assert k3[d == 0].item() == 0.0 and bool((k3[d.abs() >= 1e-6] > 0).all())


def test_k3_loss_has_zero_value_and_gradient_at_the_reference():
    reference = -torch.rand(3, 5, dtype=F64) * 4
    policy = reference.clone().requires_grad_()
    loss = 0.7 * token_kl(policy, reference, "k3").sum()
    loss.backward()
    assert loss.item() == 0.0
    assert policy.grad.abs().max().item() == 0.0


def expected_gradient(estimator: str, theta: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """E_{y∼π_θ}[∇_θ k(log π_θ(y) − log π_ref(y))] with the sample held fixed: the gradient of
    Σ_y sg[π_θ(y)]·k(y) over the whole vocabulary."""
    theta = theta.clone().requires_grad_()
    logp = torch.log_softmax(theta, -1)
    loss = (logp.exp().detach() * token_kl(logp[None], reference[None], estimator)[0]).sum()
    (grad,) = torch.autograd.grad(loss, theta)
    return grad


def kl_gradient(theta: torch.Tensor, reference: torch.Tensor, reverse: bool) -> torch.Tensor:
    """∇_θ KL(π_θ‖π_ref), or ∇_θ KL(π_ref‖π_θ) when ``reverse``, from the closed form."""
    theta = theta.clone().requires_grad_()
    logp = torch.log_softmax(theta, -1)
    kl = (reference.exp() * (reference - logp)).sum() if reverse else (logp.exp() * (logp - reference)).sum()
    (grad,) = torch.autograd.grad(kl, theta)
    return grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_which_estimator_has_the_right_gradient(seed):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(6, generator=g, dtype=F64)
    reference = torch.log_softmax(torch.randn(6, generator=g, dtype=F64), -1)
    right = kl_gradient(theta, reference, reverse=False)
    assert right.abs().max() > 1e-2
    # k1: zero in expectation; k2: ∇KL(π_θ‖π_ref); k3: ∇KL(π_ref‖π_θ).
    torch.testing.assert_close(expected_gradient("k1", theta, reference), torch.zeros(6, dtype=F64), atol=1e-15, rtol=0)
    torch.testing.assert_close(expected_gradient("k2", theta, reference), right, atol=1e-14, rtol=1e-12)
    torch.testing.assert_close(expected_gradient("k3", theta, reference), kl_gradient(theta, reference, reverse=True),
                               atol=1e-14, rtol=1e-12)
    assert (expected_gradient("k3", theta, reference) - right).abs().max() > 1e-3


def test_k1_and_k3_are_unbiased_values():
    g = torch.Generator().manual_seed(4)
    logp = torch.log_softmax(torch.randn(5, generator=g, dtype=F64), -1)
    reference = torch.log_softmax(torch.randn(5, generator=g, dtype=F64), -1)
    kl = (logp.exp() * (logp - reference)).sum()
    for estimator in ("k1", "k3"):
        value = (logp.exp() * token_kl(logp[None], reference[None], estimator)[0]).sum()
        assert value.item() == pytest.approx(kl.item(), rel=1e-12)
