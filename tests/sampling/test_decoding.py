"""The decode loop's pieces: the draw against an independent inverse CDF, the top-k / top-p scores
on fixed logits, and a prompt prefilled once for its n rows against n separate prefills."""

import math

import pytest
import torch

from selm.sampling.decoding import CachedContext, draw, sampling_scores


def test_draw_inverts_the_cdf_at_one_uniform_per_row() -> None:
    logits = torch.tensor([[0.0, 1.0, -2.0, 0.5, float("-inf")],
                           [3.0, -1.0, 0.0, 0.0, 2.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0]])
    torch.manual_seed(11)
    got = draw(logits, greedy=False)
    torch.manual_seed(11)
    uniforms = torch.rand(3, 1, dtype=torch.float64)[:, 0].tolist()
    for r, (row, u) in enumerate(zip(logits.tolist(), uniforms)):
        weights = [math.exp(z) for z in row]
        target, cumulative = u * math.fsum(weights), 0.0
        expected = next(i for i, w in enumerate(weights) if (cumulative := cumulative + w) > target)
        assert int(got[r]) == expected
    assert draw(logits, greedy=True).tolist() == [1, 0, 0]


def test_draw_frequencies_follow_the_distribution_and_skip_masked_tokens() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    rows = 20_000
    torch.manual_seed(0)
    tokens = draw(probs.log().expand(rows, -1), greedy=False)
    counts = torch.bincount(tokens, minlength=5).double()
    # Each count is binomial(rows, p): 5 standard deviations is a bound a correct draw misses
    # with probability < 1e-5 per token.
    sd = (rows * probs.double() * (1 - probs.double())).sqrt()
    assert ((counts - rows * probs.double()).abs() <= 5 * sd).all()
    assert counts[4] == 0


def test_top_k_then_top_p_on_fixed_logits() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 1.0]], dtype=torch.float64)
    # T = 0.5: scores 4, 2, 0, -2, 2. Top-3 keeps ids 0, 1, 4 (ties at the 3rd score stay).
    top3 = sampling_scores(logits, 0.5, top_k=3)
    assert torch.isinf(top3[0, [2, 3]]).all() and top3[0, [0, 1, 4]].tolist() == [4.0, 2.0, 2.0]
    # Top-p 0.8 of softmax(4, 2, 2 | masked): p0 = e⁴/(e⁴ + 2e²) = 0.787 < 0.8, so one of the two
    # next tokens is kept too (their order is the sort's), and the third is not.
    nucleus = sampling_scores(logits, 0.5, top_k=3, top_p=0.8)
    kept = (~torch.isinf(nucleus[0])).nonzero().squeeze(1).tolist()
    assert len(kept) == 2 and kept[0] == 0 and kept[1] in (1, 4)
    assert torch.equal(sampling_scores(logits, 0.0, top_k=1, top_p=0.1), logits)  # greedy: untouched
    assert torch.equal(sampling_scores(logits, 1.0), logits)


@pytest.mark.parametrize("repeats", [1, 3])
def test_one_prefill_per_prompt_equals_a_prefill_per_row(model, repeats) -> None:  # type: ignore[no-untyped-def]
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = (torch.arange(5) >= torch.tensor([[2], [0]])).long()
    with torch.inference_mode():
        shared = CachedContext(model, ids, mask, repeats=repeats)
        separate = CachedContext(model, ids.repeat_interleave(repeats, 0), mask.repeat_interleave(repeats, 0))
        tokens = torch.arange(20, 20 + 2 * repeats)
        for context in (shared, separate):
            context.advance(tokens)
            context.keep(torch.arange(0, 2 * repeats, 2))  # rows leave the batch
            context.advance(tokens[:repeats] + 1)
    # Same weights on the same tokens; only the batch size of the prefill differs, which may change
    # float32 reduction order: a few ulps of the logits' magnitude.
    scale = separate.logits.abs().max()
    torch.testing.assert_close(shared.logits, separate.logits, rtol=0, atol=float(scale) * 1e-5)
    assert shared.logits.shape == (repeats, model.config.vocab_size)


def test_sliding_window_layers_see_only_their_window(tokenizer) -> None:  # type: ignore[no-untyped-def]
    """A Gemma-3 model whose sliding layers (window 4) are passed during the decode: the cache keeps
    every position and the mask must hide the old ones, so greedy tokens and log-probs equal those of
    full forwards without a cache, left padding included."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from selm.sampling import HFSampler, SamplingParams

    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                              sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              attn_implementation="sdpa")
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12]]
    out = HFSampler(model, tokenizer, progress=False).generate(prompts, SamplingParams(temperature=0.0,
                                                                                     max_new_tokens=6))
    for prompt, (completion,) in zip(prompts, out):
        ids, logp = list(prompt), 0.0
        with torch.no_grad():
            for token in completion.token_ids:
                logits = model(torch.tensor([ids])).logits[0, -1].double()
                assert token == int(logits.argmax())
                logp += float(torch.log_softmax(logits, dim=-1)[token])
                ids.append(token)
        assert completion.logprob == pytest.approx(logp, abs=1e-4)
