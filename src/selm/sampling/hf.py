"""The default sampling backend: a transformers causal LM decoded token by token over a KV cache, batched.

Prompts are sorted by length (longest first, so padding is small and an out-of-memory batch shows
up at once), left-padded with explicit attention masks, and decoded in batches of at most
``batch_size`` rows; results are put back in prompt order. A prompt's n samples are n rows of the
same batch that share its prefill (:mod:`selm.sampling.decoding`, which also drops finished rows
and draws each token with one uniform variate).

Log-probs are read from each step's raw logits (before temperature, top-p or top-k), so they are
the trainer's log π at temperature 1; a step's logits are dropped once its tokens are drawn, so a
batch holds ``rows × vocab`` floats of logits at a time whatever ``max_new_tokens`` is.

``generate_aligned`` (linear alignment, :mod:`selm.sampling.linear_alignment`) batches and seeds the
same way and decodes over two KV caches, one per context.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import torch

from selm.config import StrictModel
from selm.errors import ConfigError, DataError
from selm.heap import keep_freed_memory
from selm.progress import progress_bar
from selm.sampling.base import Completion, Sampler, SamplerContext, SamplingParams, SamplingProgress
from selm.sampling.decoding import CachedContext, decode, sampling_scores
from selm.sampling.factory import register_sampler
from selm.sampling.linear_alignment import LinearAlignment, decode_aligned


@register_sampler
class HFSampler(Sampler):
    """Sample from a transformers causal LM.

    Args:
        model: a ``PreTrainedModel`` with ``generate`` (put it on its device beforehand).
        tokenizer: its tokenizer (for the pad/EOS ids and to decode).
        batch_size: most sequences (prompts × samples) generated together; a prompt's n samples
            are never split across batches, so a batch holds n rows when n > batch_size.
        progress: show a tqdm bar (sequences, with tokens/s).
        options: the backend's options (it has none).
        context: unused: the model in memory is what is sampled.
    """

    name = "hf"
    supports_linear_alignment = True

    def __init__(self, model: torch.nn.Module, tokenizer: Any, batch_size: int = 64, progress: bool = True,
                 options: StrictModel | None = None, context: SamplerContext | None = None):
        if batch_size < 1:
            raise ConfigError(f"sampling.batch_size: must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if _model_device(model).type == "cpu":
            keep_freed_memory()  # a decode step's [rows, V] logits are above glibc's mmap threshold
        self.progress = progress
        self.eos_token_ids = _eos_token_ids(model, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]

    def generate(self, prompt_token_ids: list[list[int]], params: SamplingParams,
                 progress: SamplingProgress | None = None) -> list[list[Completion]]:
        return self._batched(prompt_token_ids, params, progress, lambda indices, rows, seed, bar: self._generate_batch(
            [prompt_token_ids[i] for i in indices], params, rows, seed, bar))

    def generate_aligned(self, prompt_token_ids: list[list[int]], principled_token_ids: list[list[int]],
                         params: SamplingParams, alignment: LinearAlignment,
                         progress: SamplingProgress | None = None) -> list[list[Completion]]:
        """Linear alignment (:mod:`selm.sampling.linear_alignment`): one decode over both contexts.

        Batched like :meth:`generate` (by the principled prompts' lengths, one seed per batch), so
        with ``alignment.ratio == 0`` and ``params.top_p == alignment.top_p`` it draws the same
        tokens as ``generate(principled_token_ids, params)``. Log-probs are those of the plain
        prompts (the trainer's log π(y | x)), at temperature 1.
        """
        if len(principled_token_ids) != len(prompt_token_ids):
            raise DataError(f"linear alignment: {len(prompt_token_ids)} prompts but {len(principled_token_ids)} "
                            f"principled prompts")
        return self._batched(principled_token_ids, params, progress, lambda indices, rows, seed, bar: (
            self._aligned_batch([prompt_token_ids[i] for i in indices], [principled_token_ids[i] for i in indices],
                                params, alignment, rows, seed, bar)))

    def _batched(self, prompt_token_ids: list[list[int]], params: SamplingParams, progress: SamplingProgress | None,
                 run_batch: Callable[[list[int], int, int, SamplingProgress], list[Completion]]
                 ) -> list[list[Completion]]:
        """P lists of ``params.n`` completions from ``run_batch(prompt indices, rows per prompt, seed, bar)``
        over batches of prompts sorted by length (of ``prompt_token_ids``), in prompt order."""
        for i, prompt in enumerate(prompt_token_ids):
            if len(prompt) == 0:
                raise DataError(f"prompt {i} is empty: generation needs at least one prompt token")
        # Greedy samples are all the same: decode once, copy n times.
        rows_per_prompt = 1 if params.greedy else params.n
        prompts_per_batch = max(1, self.batch_size // rows_per_prompt)
        order = sorted(range(len(prompt_token_ids)), key=lambda i: -len(prompt_token_ids[i]))
        results: list[list[Completion]] = [[] for _ in prompt_token_ids]

        was_training = self.model.training
        self.model.eval()
        own = progress is None
        if own:
            progress = SamplingProgress(progress_bar(total=len(order) * params.n, desc="sampling", unit="seq",
                                             disable=not self.progress))
        try:
            for batch_index, first in enumerate(range(0, len(order), prompts_per_batch)):
                indices = order[first:first + prompts_per_batch]
                completions = run_batch(indices, rows_per_prompt, _batch_seed(params.seed, batch_index), progress)
                for j, i in enumerate(indices):
                    group = completions[j * rows_per_prompt:(j + 1) * rows_per_prompt]
                    if params.greedy:
                        group = [replace(group[0], token_ids=list(group[0].token_ids)) for _ in range(params.n)]
                    results[i] = group
        finally:
            if own:
                progress.bar.close()
            self.model.train(was_training)
        return results

    def _left_padded(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """[P, width] left-padded ids and attention mask of ``prompts``."""
        device = _model_device(self.model)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt):] = 1
        return input_ids.to(device), attention_mask.to(device)

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, rows_per_prompt: int,
                        seed: int, progress: SamplingProgress) -> list[Completion]:
        """Completions for ``prompts``, ``rows_per_prompt`` consecutive rows per prompt."""
        stop_ids = self._stop_ids(params)
        with torch.inference_mode(), _seeded(seed, _model_device(self.model)):
            context = CachedContext(self.model, *self._left_padded(prompts), repeats=rows_per_prompt,
                                    room=params.max_new_tokens)
            generated, token_logps = decode(
                [context], lambda logits: sampling_scores(logits[0], params.temperature, params.top_k, params.top_p),
                greedy=params.greedy, max_new_tokens=params.max_new_tokens, stop_ids=stop_ids,
                pad_token_id=self.pad_token_id, on_step=_counter(progress, params.n // rows_per_prompt))
        return self._completions(generated, token_logps, stop_ids)

    def _aligned_batch(self, prompts: list[list[int]], principled: list[list[int]], params: SamplingParams,
                       alignment: LinearAlignment, rows_per_prompt: int, seed: int,
                       progress: SamplingProgress) -> list[Completion]:
        """Linear-alignment completions for ``prompts`` (and their principled versions), as ``_generate_batch``."""
        stop_ids = self._stop_ids(params)
        with torch.inference_mode(), _seeded(seed, _model_device(self.model)):
            generated, token_logps = decode_aligned(
                self.model, self._left_padded(principled), self._left_padded(prompts), alignment,
                temperature=params.temperature, max_new_tokens=params.max_new_tokens, stop_ids=stop_ids,
                pad_token_id=self.pad_token_id, repeats=rows_per_prompt,
                on_step=_counter(progress, params.n // rows_per_prompt))
        return self._completions(generated, token_logps, stop_ids)

    def _stop_ids(self, params: SamplingParams) -> list[int]:
        return list(dict.fromkeys([*self.eos_token_ids, *params.stop_token_ids]))

    def _completions(self, generated: torch.Tensor, token_logps: torch.Tensor, stop_ids: list[int]) -> list[Completion]:
        """One completion per row of ``generated`` ([rows, T] ids; ``token_logps`` [rows, T] nats),
        cut after its first stop token."""
        is_stop = torch.isin(generated, torch.tensor(stop_ids, device=generated.device))
        finished = is_stop.any(dim=1)
        # Keep tokens up to and including the first stop token; everything after is padding.
        lengths = torch.where(finished, is_stop.int().argmax(dim=1) + 1, generated.shape[1])
        keep = torch.arange(generated.shape[1], device=generated.device)[None, :] < lengths[:, None]
        logprobs = (token_logps * keep).sum(dim=1)

        token_lists = [generated[r, :lengths[r]].tolist() for r in range(generated.shape[0])]
        texts = self.tokenizer.batch_decode(token_lists, skip_special_tokens=True)
        per_token = [row[:n].tolist() for row, n in zip(token_logps.cpu(), lengths.tolist())]
        return [
            Completion(token_ids=ids, text=text, logprob=float(lp), num_tokens=len(ids), finished=bool(done),
                       token_logprobs=tokens)
            for ids, text, lp, done, tokens in zip(token_lists, texts, logprobs.tolist(), finished.tolist(), per_token)
        ]


def _counter(progress: SamplingProgress, completions_per_row: int) -> Callable[[int, int], None]:
    """A decode step callback advancing ``progress`` by the step's tokens and finished completions
    (a greedy row stands for the n identical completions copied from it)."""
    return lambda tokens, finished: progress.advance(finished * completions_per_row, tokens)


def _eos_token_ids(model: torch.nn.Module, tokenizer: Any) -> list[int]:
    """EOS ids from the model's generation config (may be several), else the tokenizer's."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = config_eos if isinstance(config_eos, list) else [config_eos]
    ids = [i for i in ids if i is not None] or [tokenizer.eos_token_id]
    if ids == [None]:
        raise ConfigError("the model and tokenizer define no EOS token: sampling would never stop")
    return [int(i) for i in ids]


def _batch_seed(seed: int, batch_index: int) -> int:
    """A seed for one batch that depends only on the user seed and the batch index."""
    digest = hashlib.sha256(f"selm-sampling/{seed}/{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch seeds must fit in an int64


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with the torch RNG seeded, leaving the caller's RNG state as it was."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
