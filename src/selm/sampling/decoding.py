"""Token-by-token decoding over a KV cache: what the ``hf`` backend runs instead of ``generate``.

Three things ``transformers.generate`` does not do, and which decide sampling time when the
vocabulary is large (Gemma's 262k) and several samples are drawn per prompt:

- **A prompt is prefilled once for its n samples.** The cache of each distinct prompt is built in
  one forward and repeated n times (``Cache.batch_repeat_interleave``), so n samples cost one
  prefill, not n.
- **Finished rows leave the batch.** A row that emitted a stop token is dropped from the cache,
  the mask and the logits; later steps run on the rows still decoding.
- **Each step writes one position of the KV cache** into room reserved at the prefill, where
  ``DynamicCache`` concatenates, copying the whole cache every step.
- **One uniform variate per row draws the token** (inverse CDF over a float64 cumulative sum of
  the probabilities). ``torch.multinomial`` draws an exponential variate for every vocabulary entry
  instead: 262k per row per step on Gemma, more time than the rest of the step's non-matmul work.

The log-prob of each drawn token (log π at temperature 1, before top-k / top-p: logit − logsumexp)
is read from the step's logits, which are then dropped: one [rows, V] float32 tensor is alive at a
time, never the [rows, steps, V] that ``generate(output_logits=True)`` keeps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


def nucleus(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """[R, V] bool: the top-p nucleus of softmax(scores), the most likely token always in it.

    A token is kept when the probability of the tokens more likely than it is below ``top_p``
    (transformers' ``TopPLogitsWarper`` rule).

    Args:
        scores: [R, V] logits (already divided by the temperature).
        top_p: nucleus mass in (0, 1].
    """
    probs = torch.softmax(scores, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p
    keep_sorted[:, 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def sampling_scores(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """[R, V] scores whose softmax is the sampling distribution: logits / T, −inf outside the top-k
    tokens and then outside the top-p nucleus (the order of ``generate``'s warpers). T = 0 (greedy)
    returns the logits unchanged, for the argmax.

    Args:
        logits: [R, V] raw next-token logits.
        temperature: T ≥ 0.
        top_k: keep the k highest scores (ties at the k-th kept too); 0 keeps all.
        top_p: nucleus mass in (0, 1]; 1 keeps all.
    """
    if temperature == 0.0:
        return logits
    scores = logits / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        scores = scores.masked_fill(~nucleus(scores, top_p), float("-inf"))
    return scores


def draw(scores: torch.Tensor, greedy: bool) -> torch.Tensor:
    """[R] token ids: the argmax of each row (greedy), else one draw from softmax(scores) per row.

    The draw inverts the cumulative distribution at one ``torch.rand`` variate per row (the caller
    seeds the global RNG). The cumulative sum is float64: in float32 its rounding over 262k terms
    (up to ~1e-2 in the worst case) would move mass between tokens; in float64 it is below 1e-10.
    Tokens of probability 0 (score −inf) are never drawn.

    Args:
        scores: [R, V] from :func:`sampling_scores` (or any logits).
        greedy: take the argmax instead of drawing.
    """
    if greedy:
        return scores.argmax(dim=-1)
    cdf = torch.softmax(scores.float(), dim=-1).cumsum(dim=-1, dtype=torch.float64)
    u = torch.rand(scores.shape[0], 1, dtype=torch.float64, device=scores.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=scores.shape[-1] - 1)


class _ReservedLayer(DynamicLayer):
    """A full-attention cache layer that keeps ``room`` free positions after its prefill, so a decode
    step writes its keys and values in place (and reserves as much again when a row runs past it).

    ``keys`` and ``values`` are views of the filled positions, which is what attention reads. Sliding
    window layers use it too: the attention mask, not the cache, limits what they see.
    """

    def __init__(self, room: int):
        super().__init__()
        self.room = room
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._keys, self._values = (s.new_empty(*s.shape[:2], 0, s.shape[-1]) for s in (key_states, value_states))
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            self._keys, self._values = (self._grown(buffer, end) for buffer in (self._keys, self._values))
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def _grown(self, buffer: torch.Tensor, needed: int) -> torch.Tensor:
        """``buffer``'s filled positions in a new buffer of ``needed`` + ``room`` positions."""
        grown = buffer.new_empty(*buffer.shape[:2], needed + self.room, buffer.shape[-1])
        grown[:, :, :self.length] = buffer[:, :, :self.length]
        return grown

    def _expose(self) -> None:
        self.keys = self._keys[:, :, :self.length]
        self.values = self._values[:, :, :self.length]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._keys = self._keys[indices]
            self._values = self._values[indices]
            self._expose()


class CachedContext:
    """Left-padded prompts and their KV cache, advanced one token per row at a time.

    Positions count only real tokens (``cumsum(mask) − 1``), as ``generate`` does, so a row decodes
    the same whatever its padding and whatever other rows share the batch.

    Args:
        model: a causal LM in eval mode (a PEFT model too).
        input_ids: [P, W] left-padded prompt ids.
        attention_mask: [P, W], 1 on real tokens.
        repeats: rows per prompt: the P prompts are prefilled once and their cache repeated, giving
            R = P × repeats rows (each prompt's rows consecutive).
        room: cache positions to reserve for the tokens to come (the decode's ``max_new_tokens``);
            as many again are reserved when a row runs past them.

    Attributes:
        logits: [R, V] float32 next-token logits of every row still in the context.
    """

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 repeats: int = 1, room: int = 64):
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        parameters = inspect.signature(base.forward).parameters
        # The cache keyword is `cache` from transformers 5 on, `past_key_values` before.
        self.cache_key = "cache" if "cache" in parameters else "past_key_values"
        self.last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self.cache = DynamicCache()
        self.cache.layer_class_to_replicate = partial(_ReservedLayer, room)
        self.mask = attention_mask
        positions = (attention_mask.cumsum(dim=-1) - 1).masked_fill(attention_mask == 0, 0)
        self.logits = self._forward(input_ids, positions)
        self.next_position = positions[:, -1:] + 1
        if repeats > 1:
            self.cache.batch_repeat_interleave(repeats)
            self.mask = self.mask.repeat_interleave(repeats, dim=0)
            self.logits = self.logits.repeat_interleave(repeats, dim=0)
            self.next_position = self.next_position.repeat_interleave(repeats, dim=0)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[rows, V] float32 logits of the next token; extends the cache by ``input_ids``."""
        out = self.model(input_ids=input_ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                         **self.last_logits_only, **{self.cache_key: self.cache})
        return out.logits[:, -1].float()

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every row but ``rows`` ([R'] indices into the current rows, increasing)."""
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.logits = self.logits[rows]
        self.next_position = self.next_position[rows]

    def advance(self, tokens: torch.Tensor) -> None:
        """Append [R] ``tokens``, one to each row, and compute the next logits."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.logits = self._forward(tokens[:, None], self.next_position)
        self.next_position = self.next_position + 1


def decode(contexts: Sequence[CachedContext], scores_of: Callable[[list[torch.Tensor]], torch.Tensor], *,
           greedy: bool, max_new_tokens: int, stop_ids: list[int], pad_token_id: int, logprob_context: int = 0,
           on_step: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode up to ``max_new_tokens`` tokens on the R rows of ``contexts`` (all with the same rows).

    Each step draws one token per live row from ``scores_of`` the contexts' logits and appends it to
    every context; a row stops at its first stop token (which it keeps) and leaves the batch.

    Args:
        contexts: one or more contexts over the same R rows (linear alignment reads two).
        scores_of: the contexts' [R', V] logits (in ``contexts`` order) → [R', V] sampling scores.
        greedy: take the argmax of the scores instead of drawing.
        max_new_tokens: most tokens per row.
        stop_ids: tokens that end a row.
        pad_token_id: what fills a row after its stop token.
        logprob_context: which context's logits give the reported log-probs.
        on_step: called after each step with (tokens decoded in it, rows that finished in it, the
            rows that ran into ``max_new_tokens`` included at the last step); every row finishes once.

    Returns:
        ([R, S] token ids, S ≤ ``max_new_tokens``, ``pad_token_id`` after each row's stop token;
        [R, S] log π(token | prefix) at temperature 1 from ``contexts[logprob_context]``, nats, 0
        after the stop token).
    """
    rows = contexts[0].logits.shape[0]
    device = contexts[0].logits.device
    tokens = torch.full((rows, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logps = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    stop = torch.tensor(stop_ids, device=device)
    live = torch.arange(rows, device=device)
    steps = 0
    for step in range(max_new_tokens):
        chosen = draw(scores_of([c.logits for c in contexts]), greedy)
        reader = contexts[logprob_context].logits
        tokens[live, step] = chosen
        logps[live, step] = reader.gather(1, chosen[:, None]).squeeze(1) - torch.logsumexp(reader, dim=-1)
        steps = step + 1
        going = ~torch.isin(chosen, stop)
        last = step == max_new_tokens - 1 or not bool(going.any())
        if on_step is not None:
            on_step(len(live), len(live) if last else int((~going).sum()))
        if last:
            break
        if not bool(going.all()):
            still = going.nonzero().squeeze(1)
            live, chosen = live[still], chosen[still]
            for context in contexts:
                context.keep(still)
        for context in contexts:
            context.advance(chosen)
    return tokens[:, :steps], logps[:, :steps]
