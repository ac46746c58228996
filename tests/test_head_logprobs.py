"""The fused output-layer log-probs equal plain autograd through full logits (float64)."""

import pytest
import torch

from selm.head_logprobs import linear_token_logprobs


def _reference(hidden, weight, targets, softcap):
    z = hidden @ weight.T
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    return torch.log_softmax(z, dim=-1).gather(1, targets[:, None]).squeeze(1)


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_values_and_gradients_match_full_logits(softcap, chunk_size):
    g = torch.Generator().manual_seed(0)
    m, h, v = 7, 5, 11
    hidden = torch.randn(m, h, generator=g, dtype=torch.float64)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64)
    targets = torch.randint(0, v, (m,), generator=g)
    upstream = torch.randn(m, generator=g, dtype=torch.float64)

    h1, w1 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    expected = _reference(h1, w1, targets, softcap)
    (expected * upstream).sum().backward()

    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    got = linear_token_logprobs(h2.float(), w2.float(), targets, softcap, chunk_size)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-5, atol=1e-5)
    (got.double() * upstream).sum().backward()
    torch.testing.assert_close(h2.grad, h1.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w2.grad, w1.grad, rtol=1e-4, atol=1e-5)


def test_frozen_weight_gets_no_gradient_and_a_tied_weight_sums_both():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    frozen = torch.randn(6, 3, generator=g, dtype=torch.float64)  # LoRA: the head is frozen
    targets = torch.tensor([0, 5, 2, 2])
    linear_token_logprobs(hidden, frozen, targets).sum().backward()
    expected_h = torch.autograd.grad(_reference(hidden, frozen, targets, None).sum(), hidden)[0]
    torch.testing.assert_close(hidden.grad, expected_h, rtol=1e-5, atol=1e-6)

    # A tied weight (input embedding + output layer) gets the sum of both gradients.
    ids = torch.tensor([1, 2, 2])
    w1 = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_()
    h = torch.randn(4, 3, generator=g, dtype=torch.float64)
    (linear_token_logprobs(h, w1, targets).sum() + torch.nn.functional.embedding(ids, w1).pow(2).sum()).backward()
    (_reference(h, w2, targets, None).sum() + torch.nn.functional.embedding(ids, w2).pow(2).sum()).backward()
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-5, atol=1e-6)
