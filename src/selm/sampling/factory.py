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
        **options: backend options (for ``hf``: ``batch_size``, ``progress``).
    """
    if backend == "hf":
        return HFSampler(model, tokenizer, **options)
    if backend == "vllm":
        raise ConfigError("sampling.backend 'vllm' needs the optional extra selm[vllm] "
                          "(pip install 'selm[vllm]'), which this version does not ship yet; use 'hf'")
    raise ConfigError(f"sampling.backend: unknown backend '{backend}'; available: {', '.join(BACKENDS)}")
