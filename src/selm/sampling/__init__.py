"""Generation backends behind one interface (``Sampler.generate``), registered by name."""

# Importing a module registers its backend (vLLM itself is imported only when a sampler starts).
from selm.sampling import vllm  # noqa: F401
from selm.sampling.base import Completion, Sampler, SamplerContext, SamplingParams, SamplingProgress
from selm.sampling.factory import SAMPLERS, available_samplers, build_sampler, register_sampler
from selm.sampling.hf import HFSampler

__all__ = ["SAMPLERS", "Completion", "HFSampler", "Sampler", "SamplerContext", "SamplingParams", "SamplingProgress",
           "available_samplers", "build_sampler", "register_sampler"]
