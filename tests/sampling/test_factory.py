"""Sampling backends by name: the registry, option validation against the backend's Options, the context."""

from pathlib import Path

import pytest
import torch

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.sampling import SAMPLERS, HFSampler, Sampler, SamplerContext, SamplingParams, build_sampler, register_sampler
from selm.sampling.vllm import VLLMSampler


def test_built_in_backends_are_registered():
    assert SAMPLERS.available() == ["hf", "vllm"]
    assert SAMPLERS.get("hf") is HFSampler and SAMPLERS.get("vllm") is VLLMSampler
    assert not HFSampler.separate_engine and VLLMSampler.separate_engine


def test_common_settings_and_options_reach_the_backend(model, tokenizer, tmp_path):
    hf = build_sampler("hf", model, tokenizer, batch_size=3, progress=False, workdir=tmp_path)
    assert isinstance(hf, HFSampler) and hf.batch_size == 3 and not hf.progress
    assert HFSampler(model, tokenizer).batch_size == 64  # the backend's own default when the caller gives none

    seen = {}

    with SAMPLERS.temporary_registrations():
        @register_sampler
        class Recording(Sampler):
            name = "recording"

            class Options(StrictModel):
                width: int = 1

            def __init__(self, model, tokenizer, batch_size=5, progress=True, options=None, context=None):
                seen.update(batch_size=batch_size, progress=progress, options=options, context=context)

            def generate(self, prompt_token_ids, params, progress=None):
                return []

        build_sampler("recording", model, tokenizer, progress=False, workdir=tmp_path, policy_path="p", width=4)
        assert seen == {"batch_size": 5, "progress": False, "options": Recording.Options(width=4),
                        "context": SamplerContext(workdir=tmp_path, policy_path=Path("p"))}
        with pytest.raises(ConfigError, match=r"sampling.options \(backend 'recording'\): width: Input should be a "
                                              r"valid integer"):
            build_sampler("recording", model, tokenizer, width="wide")
    assert "recording" not in SAMPLERS


def test_options_are_checked_before_the_backend_starts(model, tokenizer):
    # vLLM need not be installed to find a misspelled option.
    with pytest.raises(ConfigError, match=r"sampling.options \(backend 'vllm'\): kv_cache_gb: unknown key"):
        build_sampler("vllm", model, tokenizer, kv_cache_gb=1)
    with pytest.raises(ConfigError, match=r"sampling.options \(backend 'hf'\): dtype: unknown key"):
        build_sampler("hf", model, tokenizer, dtype="float32")
    with pytest.raises(ConfigError, match="sampling.backend: unknown backend 'sglang'; available: hf, vllm"):
        build_sampler("sglang", model, tokenizer)


def test_a_backend_built_by_name_generates(model, tokenizer):
    prompts = [tokenizer("hello world").input_ids]
    out = build_sampler("hf", model, tokenizer, progress=False).generate(
        prompts, SamplingParams(n=2, temperature=0.0, max_new_tokens=3))
    direct = HFSampler(model, tokenizer, progress=False).generate(
        prompts, SamplingParams(n=2, temperature=0.0, max_new_tokens=3))
    assert [[c.token_ids for c in group] for group in out] == [[c.token_ids for c in group] for group in direct]
    assert torch.isfinite(torch.tensor(out[0][0].logprob))
