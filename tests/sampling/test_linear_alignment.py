"""Linear alignment: the formula on fixed logits (float64), r = 0 against plain decoding of the
principled prompt, a hand-rolled greedy decode with full forwards, and its configuration errors."""

import pytest
import torch

from selm.config import load_config
from selm.engine.score import score_sequences
from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.sampling import HFSampler, Sampler, SamplingParams
from selm.sampling.linear_alignment import (
    LinearAlignment,
    aligned_logits,
    next_token_scores,
    principled_nucleus,
    principled_prompt,
)

TEXTS = ["The quick brown fox", "hi", "sort: 3 1 2 ->", "Question: what is the capital of France? Answer:"]
PRINCIPLE = "Answer briefly."


def contexts(tokenizer) -> tuple[list[list[int]], list[list[int]]]:  # type: ignore[no-untyped-def]
    """(plain prompts, principled prompts) as token ids; the principle is a line in front."""
    plain = [tokenizer(t).input_ids for t in TEXTS]
    principled = [tokenizer(principled_prompt(t, PRINCIPLE)).input_ids for t in TEXTS]
    return plain, principled


def test_the_formula_on_fixed_logits_in_float64() -> None:
    z_p = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    z_0 = torch.tensor([[2.0, 0.0, 1.5, -3.0]], dtype=torch.float64)
    r, t = 2.0, 0.5
    expected = torch.tensor([[2.0, 3.0, -3.0, 3.0]], dtype=torch.float64)  # (1 + r)·z_P − r·z_∅ by hand
    assert torch.equal(aligned_logits(z_p, z_0, r), expected)
    # The nucleus of softmax(z_P / T): P = softmax([4, 2, 0, −2]) = (0.8668, 0.1173, 0.0159, 0.0021);
    # top-p 0.9 keeps tokens 0 and 1 (the mass before token 1 is 0.867 < 0.9, before token 2 is 0.984).
    probs = torch.softmax(z_p / t, dim=-1)
    assert probs[0, 0] < 0.9 < probs[0, 0] + probs[0, 1]
    assert principled_nucleus(z_p, t, 0.9).tolist() == [[True, True, False, False]]
    # z′ puts token 3 on top with token 1, but it is outside the principled nucleus: the mask comes
    # from z_P, not from z′ (a mask from z′ would keep tokens 1 and 3).
    p = torch.softmax(next_token_scores(z_p, z_0, LinearAlignment(ratio=r, top_p=0.9), t), dim=-1)
    weights = torch.exp(expected[0, :2] / t)
    assert torch.allclose(p[0], torch.cat([weights / weights.sum(), torch.zeros(2, dtype=torch.float64)]),
                          rtol=0, atol=1e-15)
    # Greedy (T = 0): the argmax of z′ inside the nucleus taken at T = 1.
    assert int(next_token_scores(z_p, z_0, LinearAlignment(ratio=r, top_p=0.9), 0.0).argmax()) == 1
    # r = 0: the principled distribution itself; the most likely token is kept however small top_p is.
    assert torch.equal(aligned_logits(z_p, z_0, 0.0), z_p)
    assert principled_nucleus(z_p, t, 1e-9).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, 1.0), (1.0, 0.8), (0.7, 1.0)])
def test_ratio_zero_reproduces_decoding_of_the_principled_prompt(model, tokenizer, temperature, top_p) -> None:
    plain, principled = contexts(tokenizer)
    sampler = HFSampler(model, tokenizer, batch_size=6, progress=False)  # two batches of prompts
    params = SamplingParams(n=3, temperature=temperature, top_p=top_p, max_new_tokens=10, seed=5)
    expected = sampler.generate(principled, params)
    got = sampler.generate_aligned(plain, principled, params, LinearAlignment(ratio=0.0, top_p=top_p))
    assert [[c.token_ids for c in cs] for cs in got] == [[c.token_ids for c in cs] for cs in expected]


def hand_aligned_greedy(model: torch.nn.Module, plain: list[int], principled: list[int], alignment: LinearAlignment,
                        steps: int) -> list[int]:
    """Greedy linear alignment by hand: full forwards of both contexts (no cache, no padding) in
    float64, the chosen token appended to both."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            z_p = model(torch.tensor([principled + out])).logits[:, -1].double()
            z_0 = model(torch.tensor([plain + out])).logits[:, -1].double()
            out.append(int(next_token_scores(z_p, z_0, alignment, 0.0).argmax()))
    return out


def test_greedy_decode_equals_full_forwards_and_logprobs_are_the_plain_prompts(model, tokenizer) -> None:
    plain, principled = contexts(tokenizer)
    alignment = LinearAlignment(ratio=3.0, top_p=0.8)
    out = HFSampler(model, tokenizer, progress=False).generate_aligned(
        plain, principled, SamplingParams(n=2, temperature=0.0, max_new_tokens=8), alignment)
    for p, q, completions in zip(plain, principled, out):
        assert completions[0].token_ids == completions[1].token_ids == hand_aligned_greedy(model, p, q, alignment, 8)
        # The trainer's log π(y | x) under the plain prompt (the engine's sequence log-prob); the cached
        # decode and one padded forward differ by float32 reduction order only (~1e-6 per logit of
        # size ~1, over 8 tokens).
        engine = score_sequences(model, [(p, completions[0].token_ids)], tokenizer.pad_token_id)
        assert completions[0].logprob == pytest.approx(float(engine[0]), abs=1e-4)
    # A large r changes the decode: the contrast is applied.
    plain_greedy = HFSampler(model, tokenizer, progress=False).generate(principled, SamplingParams(
        temperature=0.0, max_new_tokens=8))
    assert [c[0].token_ids for c in out] != [c[0].token_ids for c in plain_greedy]


def test_principle_placement_and_errors(model, tokenizer) -> None:
    assert principled_prompt("sort: 3 1 =>", "Be brief.") == "Be brief.\nsort: 3 1 =>"
    user = [{"role": "user", "content": "hi"}]
    assert principled_prompt(user, "Be brief.") == [{"role": "system", "content": "Be brief."}, *user]
    system = [{"role": "system", "content": "You help."}, *user]
    assert principled_prompt(system, "Be brief.")[0] == {"role": "system", "content": "Be brief.\nYou help."}
    assert system[0]["content"] == "You help."  # the caller's messages are not changed
    with pytest.raises(ConfigError, match=r"sampling.linear_alignment.ratio: must be >= 0"):
        LinearAlignment(ratio=-1.0)
    with pytest.raises(ConfigError, match=r"sampling.linear_alignment.top_p: must be in \(0, 1\]"):
        LinearAlignment(top_p=0.0)

    class Plain(Sampler):
        name = "plain"

        def generate(self, prompt_token_ids, params, progress=None):  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(ConfigError, match="sampling.linear_alignment: backend 'plain' does not support it"):
        Plain().generate_aligned([[1]], [[1]], SamplingParams(), LinearAlignment())


@pytest.mark.parametrize(("overrides", "message"), [
    (["sampling.linear_alignment={ratio: 2}"], "sampling.linear_alignment.principle: required key is missing"),
    (["sampling.linear_alignment={principle: p, ratio: -1}"], "sampling.linear_alignment.ratio: Input should be"),
    (["sampling.linear_alignment={principle: p, top_p: 0}"], "sampling.linear_alignment.top_p: Input should be"),
    (["sampling.linear_alignment={principle: p}", "sampling.top_p=0.9"],
     "sampling.linear_alignment: its own top_p is the nucleus; leave sampling.top_p at 1 and sampling.top_k at 0"),
    (["sampling.linear_alignment={principle: p}", "sampling.backend=vllm"],
     "sampling.linear_alignment: backend 'vllm' does not support it (use hf)"),
    (["eval.linear_alignment={principle: p}", "sampling.backend=vllm"],
     "eval.linear_alignment: backend 'vllm' does not support it (use hf)"),
])
def test_bad_configurations_are_one_line_naming_the_key(overrides, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
