"""Choosing a sampling backend by name."""

from __future__ import annotations

from typing import Any

import torch

from selm.errors import ConfigError
from selm.sampling.base import Sampler
from selm.sampling.hf import HFSampler

BACKENDS = ("hf", "vllm")


def build_sampler(backend: str, model: torch.nn.Module, tokenizer: Any, **options: Any) -> Sampler:
    """A sampler for ``model`` on ``backend``.

    Args:
        backend: ``"hf"`` (transformers generate; the default everywhere) or ``"vllm"``.
        model: the policy.
        tokenizer: its tokenizer.
        **options: backend options. ``hf``: ``batch_size``, ``progress`` (see :class:`HFSampler`).
            ``vllm``: ``batch_size``, ``progress``, ``policy_path`` (the policy's saved folder, so
            it need not be saved again), ``workdir``, ``dtype``, ``max_model_len``,
            ``kv_cache_gib``, ... (see :class:`selm.sampling.vllm.VLLMSampler`). The vLLM engine
            starts on the first call (30–55 s on a 2-core CPU) and is reused by later ones.

    Raises:
        ConfigError: unknown backend, or ``vllm`` without vLLM installed.
    """
    if backend == "hf":
        return HFSampler(model, tokenizer, **options)
    if backend == "vllm":
        # Imported here: the module is light, but keeps vLLM out of every hf-only process.
        from selm.sampling.vllm import VLLMSampler

        return VLLMSampler(model, tokenizer, **options)
    raise ConfigError(f"sampling.backend: unknown backend '{backend}'; available: {', '.join(BACKENDS)}")
