"""The engine's per-token clipped-ratio statistic (A-LoL seq) against a float64 per-token computation."""

import pytest
import torch

from selm.engine import ReferencePolicy, SequenceBatch, sequence_stats
from selm.modeling.tiny import build_tiny_model

VOCAB = 301
EPS = 0.2


def rows(seed, n=5):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, VOCAB, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
               for _ in range(n)]
    responses = [torch.randint(3, VOCAB, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g).tolist()
                 for _ in range(n)]
    return prompts, responses


def left_padded(prompts, responses):
    """Hand-built batch (independent of selm.data), left padding with id 0."""
    width = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids, attn, resp, pos = [], [], [], []
    for p, r in zip(prompts, responses):
        pad = width - len(p) - len(r)
        ids.append([0] * pad + p + r)
        attn.append([0] * pad + [1] * (len(p) + len(r)))
        resp.append([False] * (pad + len(p)) + [True] * len(r))
        pos.append([0] * pad + list(range(len(p) + len(r))))
    return SequenceBatch(torch.tensor(ids), torch.tensor(attn), torch.tensor(resp), torch.tensor(pos))


def token_logps(model, prompt, response):
    """[|y|] float64 log π(y_t | x, y_<t) of one sequence alone, from the full logits."""
    ids = torch.tensor([prompt + response])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
    return logp.gather(-1, ids[0, 1:, None]).squeeze(-1)[len(prompt) - 1:]


@pytest.fixture(scope="module")
def models():
    # Float64 weights, and a reference that differs from the policy so that ratios spread out.
    return build_tiny_model(VOCAB, seed=0).double(), build_tiny_model(VOCAB, seed=1).double().requires_grad_(False)


def test_values_and_gradient_match_float64_per_token_sum(models):
    policy, ref = models
    prompts, responses = rows(3)
    weights = torch.linspace(0.5, 1.5, len(prompts), dtype=torch.float64)
    stats = sequence_stats(policy, left_padded(prompts, responses), chunk_size=3,
                           reference=ReferencePolicy(ref), ratio_clip=EPS)
    got_grads = torch.autograd.grad((weights * stats.clipped_ratio_logps).sum(), list(policy.parameters()))

    expected, ratios = [], []
    for p, r in zip(prompts, responses):
        lp = token_logps(policy, p, r)
        with torch.no_grad():
            ratio = torch.exp(lp - token_logps(ref, p, r)).clamp(1 - EPS, 1 + EPS)
        ratios.append(ratio)
        expected.append((ratio * lp).sum())
    expected = torch.stack(expected)
    want_grads = torch.autograd.grad((weights * expected).sum(), list(policy.parameters()))

    all_ratios = torch.cat(ratios)
    # The clip binds on some tokens (both ends) and not on others, so each path is checked.
    assert (all_ratios == 1 - EPS).any() and (all_ratios == 1 + EPS).any()
    assert ((all_ratios > 1 - EPS) & (all_ratios < 1 + EPS)).any()
    torch.testing.assert_close(stats.clipped_ratio_logps, expected.detach(), atol=1e-10, rtol=1e-10)
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)
    # The policy's own summed log-probs are unchanged by the extra statistic.
    torch.testing.assert_close(stats.logps, torch.stack([token_logps(policy, p, r).sum()
                                                         for p, r in zip(prompts, responses)]).detach())


def test_reference_equal_to_policy_gives_the_plain_log_probs(models):
    policy, _ = models
    batch = left_padded(*rows(4))
    with torch.no_grad():
        stats = sequence_stats(policy, batch, reference=ReferencePolicy(policy), ratio_clip=0.0)
    torch.testing.assert_close(stats.clipped_ratio_logps, stats.logps, atol=1e-12, rtol=0)


def test_only_computed_when_asked_and_needs_a_reference(models):
    policy, ref = models
    batch = left_padded(*rows(5))
    with torch.no_grad():
        assert sequence_stats(policy, batch, reference=ReferencePolicy(ref)).clipped_ratio_logps is None
    with pytest.raises(ValueError, match="ratio_clip needs a reference"):
        sequence_stats(policy, batch, ratio_clip=EPS)
