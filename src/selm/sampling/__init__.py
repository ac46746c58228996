"""Generation backends behind one interface (``Sampler.generate``)."""

from selm.sampling.base import Completion, Sampler, SamplingParams, SamplingProgress
from selm.sampling.factory import build_sampler
from selm.sampling.hf import HFSampler

__all__ = ["Completion", "HFSampler", "Sampler", "SamplingParams", "SamplingProgress", "build_sampler"]
