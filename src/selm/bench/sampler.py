"""Sampling throughput: a per-prompt ``generate`` loop vs the batched ``hf`` backend vs ``vllm``.

All backends decode the same prompts greedily (so their outputs can be compared token for token)
for exactly ``max_new_tokens`` tokens (a randomly initialised model never emits EOS, so every
completion has the same length and the work is equal). The per-prompt loop is the ``hf`` backend
with ``batch_size=1``: one ``generate`` call per prompt, the same code otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from selm.bench.measure import median
from selm.bench.workloads import (
    BOS_ID,
    SHAPES,
    LengthProfile,
    build_model,
    quantile_lengths,
    word_tokenizer,
)

BACKENDS = ("loop", "hf", "vllm")


@dataclass(frozen=True)
class SamplerSpec:
    """One sampling comparison.

    Attributes:
        shape: a key of ``workloads.SHAPES``.
        prompts: number of prompts (lengths at the quantiles of the prompt length profile).
        max_new_tokens: tokens generated per prompt.
        batch_size: ``hf`` backend batch size.
        repeats: timed runs per backend (after one untimed warm-up run); the median is reported.
        backends: which of ``BACKENDS`` to run.
        threads: torch intra-op threads (0: torch's default).
    """

    shape: str
    prompts: int = 16
    max_new_tokens: int = 32
    batch_size: int = 16
    repeats: int = 1
    backends: tuple[str, ...] = BACKENDS
    threads: int = 0


def _prompts(n: int, vocab_size: int) -> list[list[int]]:
    profile = LengthProfile()
    lengths = quantile_lengths(n, profile.prompt_median, profile.prompt_sigma, 2, profile.max_length // 2)
    g = torch.Generator().manual_seed(1)
    order = torch.randperm(n, generator=g).tolist()  # unsorted, as prompts arrive
    return [[BOS_ID, *torch.randint(3, vocab_size, (lengths[i] - 1,), generator=g).tolist()] for i in order]


def _build(backend: str, model: torch.nn.Module, tokenizer: Any, spec: SamplerSpec):
    from selm.sampling.factory import build_sampler

    if backend == "loop":
        return build_sampler("hf", model, tokenizer, batch_size=1, progress=False)
    if backend == "hf":
        return build_sampler("hf", model, tokenizer, batch_size=spec.batch_size, progress=False)
    return build_sampler("vllm", model, tokenizer)


def run_sampler_bench(spec: SamplerSpec) -> dict[str, Any]:
    """Time each backend on the same greedy work.

    Returns:
        ``{"shape", "prompts", "max_new_tokens", "backends": {name: {"status", "median_seconds",
        "tokens_per_second", "tokens", "outputs_equal_to_loop"} or {"status": "skipped", "reason"}}}``;
        ``outputs_equal_to_loop`` is the fraction of prompts whose tokens equal the loop's.
    """
    from selm.sampling.base import SamplingParams

    if spec.threads:
        torch.set_num_threads(spec.threads)
    shape = SHAPES[spec.shape]
    model = build_model(shape).eval()
    # Random weights never pick EOS on purpose; no stop token makes every completion full length.
    model.generation_config.eos_token_id = None
    tokenizer = word_tokenizer(shape.vocab_size)
    prompts = _prompts(spec.prompts, shape.vocab_size)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=spec.max_new_tokens)
    results: dict[str, Any] = {}
    outputs: dict[str, list[list[int]]] = {}
    for backend in spec.backends:
        try:
            sampler = _build(backend, model, tokenizer, spec)
        except Exception as exc:  # an optional backend that is not installed is a reported skip
            results[backend] = {"status": "skipped", "reason": str(exc).splitlines()[0]}
            continue
        sampler.generate(prompts[:2], SamplingParams(n=1, temperature=0.0, max_new_tokens=4))
        seconds = []
        for _ in range(spec.repeats):
            start = time.perf_counter()
            completions = sampler.generate(prompts, params)
            seconds.append(time.perf_counter() - start)
        outputs[backend] = [group[0].token_ids for group in completions]
        tokens = sum(len(ids) for ids in outputs[backend])
        results[backend] = {"status": "ok", "median_seconds": median(seconds), "seconds": seconds, "tokens": tokens,
                            "tokens_per_second": tokens / median(seconds)}
    if "loop" in outputs:
        for backend, ids in outputs.items():
            same = sum(a == b for a, b in zip(ids, outputs["loop"]))
            results[backend]["outputs_equal_to_loop"] = same / len(prompts)
    return {"shape": spec.shape, "prompts": spec.prompts, "max_new_tokens": spec.max_new_tokens,
            "batch_size": spec.batch_size, "backends": results}
