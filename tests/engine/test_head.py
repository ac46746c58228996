"""The fused output-layer log-probs equal plain autograd through full logits (float64)."""

import contextlib

import pytest
import torch

from selm.engine.head import linear_token_logprobs


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


@pytest.mark.parametrize("existing_grad", [False, True])
def test_accumulate_grad_adds_into_dot_grad_like_autograd(existing_grad):
    # Tied weight, sparse embedding: the head adds into .grad, the embedding's sparse part lands in it.
    g = torch.Generator().manual_seed(2)
    ids, targets = torch.tensor([1, 2, 2, 5]), torch.tensor([0, 5, 2, 2])
    weight = torch.randn(6, 3, generator=g, dtype=torch.float64)
    start = torch.randn(6, 3, generator=g, dtype=torch.float64) if existing_grad else None

    def loss(w, sparse, accumulate):
        h = torch.tanh(torch.nn.functional.embedding(ids, w, sparse=sparse))
        return (linear_token_logprobs(h, w, targets, accumulate_grad=accumulate) * torch.arange(1.0, 5.0)).sum()

    w1 = weight.clone().requires_grad_()
    w1.grad = None if start is None else start.clone()
    loss(w1, sparse=False, accumulate=False).backward()
    w2 = weight.clone().requires_grad_()
    w2.grad = None if start is None else start.clone()
    loss(w2, sparse=True, accumulate=True).backward()
    assert w2.grad.layout == torch.strided
    torch.testing.assert_close(w2.grad, w1.grad, rtol=1e-12, atol=1e-12)


def test_trainer_context_keeps_tied_model_gradients_exact():
    from selm.data import TokenizedPair, collate_preference_batch
    from selm.engine import SequenceStatsModel, tied_head_gradient_in_place
    from selm.modeling.tiny import build_tiny_model

    torch.manual_seed(0)
    pairs = [TokenizedPair(index=i, prompt_ids=[1, 40 + i, 41], chosen_ids=[12, 13 + i, 2], rejected_ids=[14, 2])
             for i in range(3)]
    batch = collate_preference_batch(pairs, 0)
    grads = []
    for in_place in (False, True):
        model = build_tiny_model(300, tie_word_embeddings=True).double()
        wrapper = SequenceStatsModel(model, chunk_size=4)
        context = tied_head_gradient_in_place(wrapper, "NO") if in_place else contextlib.nullcontext()
        with context:
            assert wrapper.head_grad_into_param == in_place
            for _ in range(2):  # two micro-batches accumulate
                (wrapper(batch).logps * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum().backward()
        assert not model.get_input_embeddings().sparse and not wrapper.head_grad_into_param
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-12, atol=1e-12, msg=name)
    # Under FSDP / DeepSpeed the context does nothing.
    wrapper = SequenceStatsModel(build_tiny_model(300, tie_word_embeddings=True), chunk_size=4)
    with tied_head_gradient_in_place(wrapper, "FSDP"):
        assert not wrapper.head_grad_into_param
