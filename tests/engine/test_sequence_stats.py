"""The chunked log-prob engine against a naive full-logits computation, in float64 where it matters."""

import json
import os
import subprocess
import sys

import pytest
import torch

from selm.engine import (
    ReferencePolicy,
    SequenceBatch,
    naive_sequence_logps,
    sequence_stats,
)
from selm.modeling.tiny import build_tiny_model

VOCAB = 301


def make_batch(prompts, responses, padding_side="right", pad_id=0, extra_pad=0):
    """Hand-built batch (independent of selm.data): prompt+response rows padded to one length."""
    rows = [p + r for p, r in zip(prompts, responses)]
    width = max(map(len, rows)) + extra_pad
    ids, attn, resp, pos = [], [], [], []
    for p, r in zip(prompts, responses):
        n = len(p) + len(r)
        pad = width - n
        body_ids, body_resp = p + r, [False] * len(p) + [True] * len(r)
        if padding_side == "right":
            ids.append(body_ids + [pad_id] * pad)
            attn.append([1] * n + [0] * pad)
            resp.append(body_resp + [False] * pad)
            pos.append(list(range(n)) + [0] * pad)
        else:
            ids.append([pad_id] * pad + body_ids)
            attn.append([0] * pad + [1] * n)
            resp.append([False] * pad + body_resp)
            pos.append([0] * pad + list(range(n)))
    return SequenceBatch(torch.tensor(ids), torch.tensor(attn), torch.tensor(resp), torch.tensor(pos))


def random_rows(seed, n=5):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, VOCAB, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    responses = [torch.randint(3, VOCAB, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]
    return prompts, responses


def float64_logps(model, prompts, responses):
    """Ground truth: each sequence alone (no padding), full logits in float64."""
    model64 = build_tiny_model(VOCAB).double()
    model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    out = []
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        logits = model64(input_ids=ids).logits[0].double()
        logp = torch.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        out.append(logp[len(p) - 1:].sum().item())
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_values_and_gradients_match_full_logits(chunk_size):
    model = build_tiny_model(VOCAB)
    batch = make_batch(*random_rows(0))
    chunked = sequence_stats(model, batch, chunk_size=chunk_size).logps
    naive = naive_sequence_logps(model, batch)
    torch.testing.assert_close(chunked, naive, atol=1e-5, rtol=1e-5)
    weights = torch.linspace(0.5, 1.5, len(chunked))
    g_chunk = torch.autograd.grad((weights * chunked).sum(), list(model.parameters()))
    g_naive = torch.autograd.grad((weights * naive).sum(), list(model.parameters()))
    for a, b in zip(g_chunk, g_naive):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_matches_float64_unpadded_ground_truth():
    model = build_tiny_model(VOCAB)
    prompts, responses = random_rows(1)
    stats = sequence_stats(model, make_batch(prompts, responses), chunk_size=4)
    torch.testing.assert_close(stats.logps.double(), float64_logps(model, prompts, responses), atol=2e-5, rtol=1e-5)
    assert stats.lengths.tolist() == [len(r) for r in responses]


def test_invariant_to_padding_side_and_amount():
    model = build_tiny_model(VOCAB)
    prompts, responses = random_rows(2)
    reference = sequence_stats(model, make_batch(prompts, responses)).logps
    for side in ("left", "right"):
        for extra in (0, 5):
            got = sequence_stats(model, make_batch(prompts, responses, side, extra_pad=extra)).logps
            torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)


def test_prompt_tokens_never_counted():
    model = build_tiny_model(VOCAB)
    prompts, responses = random_rows(3)
    base = sequence_stats(model, make_batch(prompts, responses)).logps
    # Changing the last prompt token changes the context but a changed *first* prompt token's own
    # log-prob must not enter: compare against a batch whose prompts are scored as responses.
    as_response = sequence_stats(model, make_batch([p[:1] for p in prompts],
                                                   [p[1:] + r for p, r in zip(prompts, responses)])).logps
    assert torch.all(as_response < base - 1e-3)  # more tokens scored -> strictly lower log-prob
    gt = float64_logps(model, prompts, responses)
    torch.testing.assert_close(base.double(), gt, atol=2e-5, rtol=1e-5)


def test_entropy_and_kl_against_full_distribution():
    policy, ref = build_tiny_model(VOCAB, seed=0), build_tiny_model(VOCAB, seed=1)
    prompts, responses = random_rows(4)
    batch = make_batch(prompts, responses)
    stats = sequence_stats(policy, batch, chunk_size=2, with_entropy=True, reference=ReferencePolicy(ref))
    lp = torch.log_softmax(policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids).logits[:, :-1].double(), -1)
    lr = torch.log_softmax(ref(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids).logits[:, :-1].double(), -1)
    mask = batch.response_mask[:, 1:].double()
    entropy = (-(lp.exp() * lp).sum(-1) * mask).sum(-1)
    kl = ((lr.exp() * (lr - lp)).sum(-1) * mask).sum(-1)
    torch.testing.assert_close(stats.entropy.double(), entropy, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(stats.kl.double(), kl, atol=1e-5, rtol=1e-4)
    assert torch.all(stats.kl >= 0)


def test_kl_to_itself_is_zero_and_reference_gets_no_gradient():
    policy = build_tiny_model(VOCAB)
    ref = build_tiny_model(VOCAB)
    batch = make_batch(*random_rows(5))
    stats = sequence_stats(policy, batch, reference=ReferencePolicy(ref))
    torch.testing.assert_close(stats.kl, torch.zeros_like(stats.kl), atol=1e-6, rtol=0)
    stats.kl.sum().backward()
    assert all(p.grad is None for p in ref.parameters())


MEMORY_PROBE = r"""
import json, resource, sys, torch
from selm.engine import SequenceBatch, sequence_stats, naive_sequence_logps
from selm.modeling.tiny import build_tiny_model
torch.set_num_threads(1)
vocab, mode = int(sys.argv[1]), sys.argv[2]
model = build_tiny_model(vocab, hidden_size=32, num_hidden_layers=1, max_position_embeddings=512)
N, T = 2, 256
ids = torch.randint(3, vocab, (N, T))
resp = torch.zeros(N, T, dtype=torch.bool); resp[:, 64:] = True
batch = SequenceBatch(ids, torch.ones(N, T, dtype=torch.long), resp, torch.arange(T).expand(N, T))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
logps = sequence_stats(model, batch).logps if mode == "chunked" else naive_sequence_logps(model, batch)
logps.sum().backward()
print(json.dumps({"peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def _peak_mb(vocab, mode):
    # glibc keeps freed heap blocks mapped, so peak RSS would count every chunk ever allocated;
    # a low mmap threshold returns freed tensors to the OS and makes peak RSS track live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(vocab), mode], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.slow  # ~40-60 s: four subprocesses with 32k- and 256k-vocabulary heads
def test_chunked_peak_memory_flat_while_vocab_grows():
    """32k -> 256k vocab, same 2x256 sequences: the naive path grows by GBs (N·T·V logits),
    the chunked path only by the weights' own growth (embedding + head and their gradients)."""
    chunked = {v: _peak_mb(v, "chunked") for v in (32_000, 256_000)}
    naive = {v: _peak_mb(v, "naive") for v in (32_000, 256_000)}
    naive_growth = naive[256_000] - naive[32_000]
    chunked_growth = chunked[256_000] - chunked[32_000]
    weights_growth_mb = 4 * (256_000 - 32_000) * 32 * 4 / 2**20
    assert naive_growth > 1000, naive
    assert chunked_growth < 0.1 * naive_growth, (chunked, naive)
    assert chunked_growth < weights_growth_mb + 100, (chunked, weights_growth_mb)


# ----- padding-free packing -------------------------------------------------------------------

def tiny_gemma3(attn_implementation="sdpa", sliding_window=4, seed=0):
    """Gemma 3 text model, random init: two sliding-window layers (window 4 < the sequences) and one
    global layer, logit soft-capping on: the packed mask must cut both kinds of attention per sequence."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=sliding_window, max_position_embeddings=128,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"], final_logit_softcapping=30.0,
        attn_implementation=attn_implementation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Gemma3ForCausalLM(config).double()


PACKED_MODELS = {
    "llama": lambda seed=0: build_tiny_model(VOCAB, seed=seed).double(),
    "gemma3-sdpa": lambda seed=0: tiny_gemma3("sdpa", seed=seed),
    "gemma3-eager": lambda seed=0: tiny_gemma3("eager", seed=seed),
}
# (atol, rtol). Llama runs fully in float64. Gemma 3's RMSNorm (and eager attention's softmax)
# compute in float32 even in a float64 model, so 1-ulp float32 flips (~1e-7 relative) show up;
# cross-talk between packed sequences moves the numbers by > 1e-2 (last test below).
PACKED_TOLERANCE = {"llama": (1e-10, 1e-10), "gemma3-sdpa": (1e-6, 1e-5), "gemma3-eager": (1e-6, 1e-5)}


def skewed_rows(seed, n=7):
    """Mostly short sequences and a long one (longer than Gemma's window), so rows hold several."""
    prompts, responses = random_rows(seed, n)
    g = torch.Generator().manual_seed(seed)
    responses[0] = torch.randint(3, VOCAB, (14,), generator=g).tolist()
    return prompts, responses


def packed_batch(prompts, responses, layout):
    from selm.engine import pack_sequences
    return pack_sequences(list(zip(prompts, responses)), pad_token_id=0, layout=layout)


def alone_float64_logps(model, prompts, responses):
    """Ground truth without any batching: each float64 sequence on its own, full logits."""
    out = []
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        out.append(logp[len(p) - 1:].sum())
    return torch.stack(out)


@pytest.mark.parametrize("name", list(PACKED_MODELS))
@pytest.mark.parametrize("layout", ["rows", "one_row"])
def test_packed_equals_each_sequence_alone_values_and_gradients(name, layout):
    model = PACKED_MODELS[name]()
    atol, rtol = PACKED_TOLERANCE[name]
    prompts, responses = skewed_rows(6)
    packed = packed_batch(prompts, responses, layout)
    if layout == "rows":
        assert packed.input_ids.shape[0] < len(prompts)  # some row really holds several sequences
    weights = torch.linspace(0.5, 1.5, len(prompts), dtype=torch.float64)
    got = sequence_stats(model, packed, chunk_size=5, with_entropy=True).logps
    truth = alone_float64_logps(model, prompts, responses)
    torch.testing.assert_close(got, truth, atol=atol, rtol=rtol)
    g_packed = torch.autograd.grad((weights * got).sum(), list(model.parameters()))
    g_truth = torch.autograd.grad((weights * truth).sum(), list(model.parameters()))
    for a, b in zip(g_packed, g_truth):
        torch.testing.assert_close(a, b, atol=atol, rtol=100 * rtol)


# Not gemma3-eager: in float64, its fully masked padding rows turn into NaN (transformers' eager
# softmax runs in float32), which the padded path then spreads; the test above covers it.
@pytest.mark.parametrize("name", ["llama", "gemma3-sdpa"])
def test_packed_equals_left_and_right_padded_with_entropy(name):
    model = PACKED_MODELS[name]()
    atol, rtol = PACKED_TOLERANCE[name]
    prompts, responses = skewed_rows(8)
    weights = torch.linspace(0.5, 1.5, len(prompts), dtype=torch.float64)

    def run(batch):
        stats = sequence_stats(model, batch, chunk_size=5, with_entropy=True)
        grads = torch.autograd.grad((weights * stats.logps).sum() + 0.1 * stats.entropy.sum(), list(model.parameters()))
        return stats, grads

    got, g_packed = run(packed_batch(prompts, responses, "rows"))
    for side in ("right", "left"):
        padded, g_padded = run(make_batch(prompts, responses, side))
        torch.testing.assert_close(got.logps, padded.logps, atol=atol, rtol=rtol)
        torch.testing.assert_close(got.entropy, padded.entropy, atol=atol, rtol=rtol)
        assert got.lengths.tolist() == padded.lengths.tolist() == [len(r) for r in responses]
        for a, b in zip(g_packed, g_padded):
            torch.testing.assert_close(a, b, atol=atol, rtol=100 * rtol)


@pytest.mark.parametrize("name", ["llama", "gemma3-sdpa"])
def test_packed_kl_to_reference_equals_padded(name):
    policy, ref = PACKED_MODELS[name](seed=0), PACKED_MODELS[name](seed=1)
    prompts, responses = skewed_rows(7)
    packed = sequence_stats(policy, packed_batch(prompts, responses, "rows"), reference=ReferencePolicy(ref))
    padded = sequence_stats(policy, make_batch(prompts, responses, "left"), reference=ReferencePolicy(ref))
    atol, rtol = PACKED_TOLERANCE[name]
    torch.testing.assert_close(packed.kl, padded.kl, atol=atol, rtol=rtol)
    assert torch.all(packed.kl > 0)


def test_gemma3_window_is_exercised_and_packing_would_show_cross_talk():
    """Guards the tests above against passing vacuously: the sliding window changes the numbers,
    and the same packed row without its position ids (one long sequence) changes them too."""
    prompts, responses = skewed_rows(6)
    packed = packed_batch(prompts, responses, "one_row")
    with torch.no_grad():
        windowed = sequence_stats(tiny_gemma3(sliding_window=4), packed).logps
        wide = sequence_stats(tiny_gemma3(sliding_window=128), packed).logps
        joined = SequenceBatch(packed.input_ids, torch.ones_like(packed.input_ids), packed.response_mask,
                               torch.arange(packed.input_ids.shape[1])[None])
        contaminated = tiny_gemma3(sliding_window=4)(**joined.decoder_inputs()).logits
    assert (windowed - wide).abs().max() > 1e-3
    later = packed.sequence_ids[0] > 0
    alone_logits = tiny_gemma3(sliding_window=4)(input_ids=packed.input_ids, position_ids=packed.position_ids).logits
    assert (contaminated[0, later] - alone_logits[0, later]).abs().max() > 1e-2
