"""HFSampler against hand-rolled decoding and full forwards of the same tiny model."""

import pytest
import torch

from selm.errors import ConfigError, DataError
from selm.sampling import HFSampler, SamplingParams, build_sampler

TEXTS = ["The quick brown fox", "hi", "sort: 3 1 2 ->", "Question: what is the capital of France? Answer:"]


def prompts_of(tokenizer) -> list[list[int]]:  # type: ignore[no-untyped-def]
    return [tokenizer(t).input_ids for t in TEXTS]  # lengths 12, 1, 9, 29


def argmax_decode(model, prompt: list[int], max_new_tokens: int,  # type: ignore[no-untyped-def]
                  stop: set[int]) -> list[int]:
    """Greedy decoding by hand: a full forward (no cache, no padding) per new token."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token in stop:
                break
    return ids[len(prompt):]


def full_forward_logprob(model, prompt: list[int], completion: list[int]) -> float:  # type: ignore[no-untyped-def]
    """Σ log π(completion token | prefix) from one forward over prompt + completion (nats)."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    return float(logp.gather(1, targets[:, None]).squeeze(1)[len(prompt) - 1:].sum())


def test_greedy_equals_hand_rolled_argmax(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompts = prompts_of(tokenizer)
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    out = HFSampler(model, tokenizer, progress=False).generate(prompts, params)
    for prompt, completions in zip(prompts, out):
        expected = argmax_decode(model, prompt, 8, {tokenizer.eos_token_id})
        assert completions[0].token_ids == expected
    assert [len(c[0].token_ids) for c in out] == [8, 8, 8, 8]
    assert [c[0].finished for c in out] == [False] * 4


def test_left_padding_and_batching_do_not_change_greedy(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompts = prompts_of(tokenizer)
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=8)
    together = HFSampler(model, tokenizer, batch_size=64, progress=False).generate(prompts, params)
    one_by_one = HFSampler(model, tokenizer, batch_size=1, progress=False).generate(prompts, params)
    assert [[c.token_ids for c in cs] for cs in together] == [[c.token_ids for c in cs] for cs in one_by_one]
    for a, b in zip(together, one_by_one):
        assert a[0].logprob == pytest.approx(b[0].logprob, abs=1e-4)
    # Greedy copies are equal but distinct objects.
    assert together[0][0] == together[0][1] and together[0][0] is not together[0][1]
    assert together[0][0].token_ids is not together[0][1].token_ids


def test_order_is_restored(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompts = prompts_of(tokenizer)
    sampler = HFSampler(model, tokenizer, batch_size=2, progress=False)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    forward = [c[0].token_ids for c in sampler.generate(prompts, params)]
    backward = [c[0].token_ids for c in sampler.generate(prompts[::-1], params)]
    assert backward == forward[::-1]
    assert len(set(map(tuple, forward))) == 4  # the prompts really have different answers


@pytest.mark.parametrize("rows_stop_early", [False, True])
def test_logprob_matches_full_forward(request, tokenizer, rows_stop_early) -> None:  # type: ignore[no-untyped-def]
    """Each completion's log-prob and tokens against one full forward over prompt + completion; with
    the EOS-heavy model rows stop at different steps and leave the batch (and its shared-prefix
    cache) while the others go on decoding."""
    prompts = prompts_of(tokenizer)
    policy = request.getfixturevalue("eos_heavy_model" if rows_stop_early else "model")  # the first edits the second
    # Truncated, tempered sampling: the recorded log-prob is still the plain temperature-1 one.
    # (At temperature 1 the EOS-heavy model stops with probability ≈ 0.15 a step, see conftest.)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=3) if rows_stop_early else SamplingParams(
        n=3, temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=10, seed=3)
    out = HFSampler(policy, tokenizer, batch_size=6, progress=False).generate(prompts, params)
    lengths = set()
    for prompt, completions in zip(prompts, out):
        for c in completions:
            assert c.logprob == pytest.approx(full_forward_logprob(policy, prompt, c.token_ids), abs=1e-4)
            assert c.logprob < 0 and c.num_tokens == len(c.token_ids)
            assert c.finished == (c.token_ids[-1] == tokenizer.eos_token_id)
            lengths.add(c.num_tokens)
    assert sum(len(c) for c in out) == 12
    assert len(lengths) > 2 if rows_stop_early else lengths == {10}


def test_seeds(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompts = prompts_of(tokenizer)
    sampler = HFSampler(model, tokenizer, batch_size=6, progress=False)

    def sample(seed: int) -> list[list[list[int]]]:
        out = sampler.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=seed))
        return [[c.token_ids for c in cs] for cs in out]

    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    first = sample(0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    torch.manual_seed(999)  # unrelated global state does not matter
    assert sample(0) == first
    assert sample(1) != first
    assert [len(cs) for cs in first] == [3, 3, 3, 3]
    assert all(len(set(map(tuple, cs))) == 3 for cs in first)  # n independent samples per prompt


def test_eos_ends_a_completion(eos_heavy_model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    eos = tokenizer.eos_token_id
    prompts = prompts_of(tokenizer)
    sampler = HFSampler(eos_heavy_model, tokenizer, progress=False)
    greedy = sampler.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=5))
    assert [(c[0].token_ids, c[0].text, c[0].num_tokens, c[0].finished) for c in greedy] == [([eos], "", 1, True)] * 4

    out = sampler.generate(prompts, SamplingParams(n=16, temperature=1.0, max_new_tokens=6, seed=0))
    finished = [c.finished for cs in out for c in cs]
    assert 0 < sum(finished) < len(finished)
    for prompt, completions in zip(prompts, out):
        for c in completions:
            assert eos not in c.token_ids[:-1]  # nothing after EOS, no padding
            assert c.token_ids[-1] == eos if c.finished else len(c.token_ids) == 6
            assert c.text == tokenizer.decode(c.token_ids, skip_special_tokens=True)
            assert "</s>" not in c.text and "<pad>" not in c.text
            assert c.logprob == pytest.approx(full_forward_logprob(eos_heavy_model, prompt, c.token_ids), abs=1e-4)


def test_stop_token_ids(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompt = prompts_of(tokenizer)[0]
    sampler = HFSampler(model, tokenizer, progress=False)
    full = sampler.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=8))[0][0].token_ids
    stop = full[2]
    cut = full[:full.index(stop) + 1]
    got = sampler.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=8, stop_token_ids=[stop]))[0][0]
    assert got.token_ids == cut and got.finished and got.num_tokens == len(cut) <= 3
    assert got.text == tokenizer.decode(cut)  # a non-special stop token stays in the text


def test_mode_is_restored(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    sampler = HFSampler(model, tokenizer, progress=False)
    model.train()
    sampler.generate(prompts_of(tokenizer), SamplingParams(temperature=0.0, max_new_tokens=2))
    assert model.training
    model.eval()
    sampler.generate(prompts_of(tokenizer), SamplingParams(temperature=0.0, max_new_tokens=2))
    assert not model.training


def test_invalid_inputs(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="prompt 1 is empty"):
        HFSampler(model, tokenizer, progress=False).generate([[5], []], SamplingParams())
    with pytest.raises(ConfigError, match="sampling.batch_size"):
        HFSampler(model, tokenizer, batch_size=0)
    assert isinstance(build_sampler("hf", model, tokenizer, batch_size=4, progress=False), HFSampler)
    with pytest.raises(ConfigError, match="unknown backend 'foo'; available: hf, vllm"):
        build_sampler("foo", model, tokenizer)


def test_progress_counts_completions_and_decoded_tokens(eos_heavy_model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    import io

    from tqdm import tqdm

    from selm.sampling import SamplingProgress

    prompts = prompts_of(tokenizer)
    sampler = HFSampler(eos_heavy_model, tokenizer, batch_size=6, progress=False)
    for params in (SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=1),
                   SamplingParams(n=3, temperature=0.0, max_new_tokens=6)):
        progress = SamplingProgress(tqdm(total=len(prompts) * params.n, file=io.StringIO()))
        out = sampler.generate(prompts, params, progress=progress)
        # One shared bar over several batches reaches exactly P × n; its tokens are the decoded
        # ones (a greedy decode is one row, copied n times).
        assert progress.bar.n == len(prompts) * params.n
        rows = [group[:1] if params.greedy else group for group in out]
        assert progress.tokens == sum(c.num_tokens for group in rows for c in group)
        if not params.greedy:  # rows that stopped early and rows that ran to max_new_tokens were both counted
            assert {c.finished for group in out for c in group} == {True, False}
