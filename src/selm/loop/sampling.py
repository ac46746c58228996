"""Sampling a round's policy over the processes, with samples that do not depend on their number."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from selm.artifacts import Candidate, Prompt
from selm.data import tokenize_prompt, tokenize_response
from selm.distributed import map_sharded
from selm.loop.config import RunConfig
from selm.loop.seeds import derived_seed
from selm.progress import progress_bar
from selm.rundir import RunDir
from selm.sampling import Completion, Sampler, SamplingParams, SamplingProgress, build_sampler
from selm.sampling.linear_alignment import LinearAlignment, principled_prompt
from selm.sampling.tree import TreeShape, generate_tree


def sampled_candidate(completion: Completion, keep_token_logprobs: bool = False) -> Candidate:
    """A sampler's completion as a candidate row; its per-token log-probs only when asked (rollouts)."""
    tokens = completion.token_logprobs if keep_token_logprobs else None
    return Candidate(text=completion.text, token_ids=list(completion.token_ids), logprob=float(completion.logprob),
                     num_tokens=int(completion.num_tokens), finished=bool(completion.finished),
                     token_logprobs=list(tokens) if tokens is not None else None)


def dataset_candidate(tokenizer: Any, prompt: Prompt, response: Any, source: str = "dataset") -> Candidate:
    """A dataset response (or, ``source="demonstration"``, a demonstration) as a candidate: tokenized
    like training data, never sampled (no log-prob)."""
    ids = tokenize_response(tokenizer, prompt, response)
    text = response[-1]["content"] if isinstance(response, list) else response
    return Candidate(text=text, token_ids=ids, logprob=None, num_tokens=len(ids), finished=True, source=source)


class BlockSampler:
    """Builds the configured sampler backend for a policy and runs it over fixed, seeded prompt blocks.

    Args:
        config: the run config (``sampling``).
        tokenizer: the policy's tokenizer.
        accelerator: the run's accelerator; the blocks are sharded over its processes.
        run_dir: the run directory (the vLLM backend's work folder lives in its cache).
        progress: show a progress bar.
    """

    def __init__(self, config: RunConfig, tokenizer: Any, accelerator: Any, run_dir: RunDir, progress: bool):
        self.config = config
        self.tokenizer = tokenizer
        self.accelerator = accelerator
        self.run_dir = run_dir
        self.progress = progress

    def backend(self, model: torch.nn.Module, saved: Path | None) -> Sampler:
        """A sampler for ``model``, whose weights are saved in ``saved`` (None: π0, saved nowhere yet).

        A backend that loads weights from disk (vllm) reads the saved folder, and keeps its own files
        (π0's saved copy, its cache) in the run's ``cache/<backend>``.
        """
        s = self.config.sampling
        # One sampler call per block of prompts (see generate): the bar there counts blocks.
        return build_sampler(s.backend, model=model, tokenizer=self.tokenizer, batch_size=s.batch_size, progress=False,
                             workdir=self.run_dir.path / "cache" / s.backend, policy_path=saved, **s.options)

    def params(self, n: int, temperature: float, seed: int) -> SamplingParams:
        """``n`` completions per prompt at ``temperature``, with the run's top-p, top-k and length limits."""
        s = self.config.sampling
        return SamplingParams(n=n, temperature=temperature, top_p=s.top_p, top_k=s.top_k,
                              max_new_tokens=s.max_new_tokens, seed=seed,
                              stop_token_ids=[self.tokenizer.eos_token_id])

    def principled_ids(self, prompts: list[Prompt], principle: str) -> list[list[int]]:
        """The token ids of ``prompts`` with ``principle`` added: linear alignment's principled context."""
        return [tokenize_prompt(self.tokenizer, principled_prompt(p, principle)) for p in prompts]

    def generate(self, sampler: Sampler, prompt_ids: list[list[int]], params: SamplingParams,
                 aligned: tuple[list[list[int]], LinearAlignment] | None = None,
                 tree: TreeShape | None = None) -> list[list[Completion]]:
        """``sampler.generate`` over the processes: P prompts → P lists of ``params.n`` completions.

        With ``aligned`` = (the P prompts' principled ids, its parameters), ``sampler.generate_aligned``
        (linear alignment) instead; with ``tree``, :func:`selm.sampling.tree.generate_tree` (B^D leaves).

        A sampler's batch shares one random stream, so a prompt's samples depend on its batch
        mates. The prompts are therefore cut into fixed blocks of consecutive indices, one sampler
        batch each, every block seeded from its index; the processes take contiguous runs of blocks.
        """
        rows_per_prompt = 1 if params.greedy else params.n
        size = max(1, self.config.sampling.batch_size // rows_per_prompt)

        def block(start: int, progress: SamplingProgress) -> list[list[Completion]]:
            block_params = replace(params, seed=derived_seed(params.seed, start // size, "block"))
            if tree is not None:
                return generate_tree(sampler, self.tokenizer, prompt_ids[start:start + size], block_params, tree,
                                     progress=progress)
            if aligned is None:
                return sampler.generate(prompt_ids[start:start + size], block_params, progress=progress)
            principled, alignment = aligned
            return sampler.generate_aligned(prompt_ids[start:start + size], principled[start:start + size],
                                            block_params, alignment, progress=progress)

        def run(starts: list[int]) -> list[list[list[Completion]]]:
            total = sum(len(prompt_ids[start:start + size]) for start in starts) * params.n
            progress = SamplingProgress(progress_bar(total=total, desc="sampling", unit="seq", disable=not self.progress))
            try:
                return [block(start, progress) for start in starts]
            finally:
                progress.bar.close()

        blocks = map_sharded(self.accelerator, list(range(0, len(prompt_ids), size)), run)
        return [completions for block in blocks for completions in block]
