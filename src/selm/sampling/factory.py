"""Sampling backends by name, and ``build_sampler`` to make one.

A backend is a ``Sampler`` subclass with ``name`` and ``Options``, decorated with
``register_sampler``; it is one file (see docs/extending.md). Its options come from the run
config's ``sampling.options`` and are validated by its ``Options`` model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selm.config import validate
from selm.registry import Registry
from selm.sampling.base import Sampler, SamplerContext

SAMPLERS: Registry[type[Sampler]] = Registry("backend", key="sampling.backend")

register_sampler = SAMPLERS.register
available_samplers = SAMPLERS.available


def build_sampler(backend: str, model: torch.nn.Module, tokenizer: Any, *, batch_size: int | None = None,
                  progress: bool | None = None, workdir: str | Path | None = None,
                  policy_path: str | Path | None = None, **options: Any) -> Sampler:
    """A sampler for ``model`` on ``backend``.

    Args:
        backend: a registered backend: ``"hf"`` (transformers generate; the default everywhere),
            ``"vllm"``, or a user's.
        model: the policy.
        tokenizer: its tokenizer.
        batch_size: most sequences generated together; None: the backend's default.
        progress: show the backend's own progress bar; None: the backend's default.
        workdir: see :class:`SamplerContext`.
        policy_path: see :class:`SamplerContext`.
        **options: the backend's own options, validated by its ``Options`` (``vllm``: ``dtype``,
            ``max_model_len``, ``kv_cache_gib``, ... see :class:`selm.sampling.vllm.VLLMSampler`).

    Raises:
        ConfigError: unknown backend or option, or a backend that cannot start (``vllm`` without
            vLLM installed).
    """
    cls = SAMPLERS.get(backend)
    validated = validate(cls.Options, options, source=f"sampling.options (backend '{backend}')")
    common = {key: value for key, value in (("batch_size", batch_size), ("progress", progress)) if value is not None}
    context = SamplerContext(workdir=Path(workdir) if workdir is not None else None,
                             policy_path=Path(policy_path) if policy_path is not None else None)
    return cls(model, tokenizer, options=validated, context=context, **common)
