"""Linear alignment (Gao et al. 2024, https://arxiv.org/abs/2401.11458): decoding-time alignment
with no training, by self-contrast between the same policy with and without a principle.

At every step the policy reads two contexts that differ only in the principle (a system message,
or text in front of a plain prompt): z_P, the next-token logits with it, and z_∅, without it. The
token is drawn from

    z′ = (1 + r) · z_P − r · z_∅
    p  = softmax(z′ / T) restricted to top-p(softmax(z_P / T)), renormalised     (T = 0: argmax of p)

and appended to both contexts, so the two always hold the same continuation. The nucleus comes
from the principled distribution, not from z′: the contrast may push up tokens the principled
policy finds implausible, and the mask keeps them out. r = 0 is plain decoding of the principled
prompt. As in the authors' code (``Wizardcoast/Linear_Alignment``, ``model.py``): the formula on
raw logits, the top-p mask of softmax(z_P / T) keeping at least one token, the token appended to
both contexts; their defaults r = 3, top-p 0.8 (``infer_hh.sh``, which decodes greedily).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from selm.data.messages import Turns, is_conversation
from selm.errors import ConfigError


@dataclass(frozen=True)
class LinearAlignment:
    """How much to contrast (the principle itself is already in the principled prompt).

    Attributes:
        ratio: r ≥ 0, the weight of the contrast; 0 decodes the principled prompt as is.
        top_p: nucleus mass in (0, 1] of the principled distribution that the token must lie in.
    """

    ratio: float = 3.0
    top_p: float = 0.8

    def __post_init__(self) -> None:
        if not self.ratio >= 0.0:
            raise ConfigError(f"sampling.linear_alignment.ratio: must be >= 0, got {self.ratio!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"sampling.linear_alignment.top_p: must be in (0, 1], got {self.top_p!r}")


def aligned_logits(principled: torch.Tensor, plain: torch.Tensor, ratio: float) -> torch.Tensor:
    """z′ = (1 + r)·z_P − r·z_∅.

    Args:
        principled: [R, V] next-token logits with the principle, z_P.
        plain: [R, V] next-token logits without it, z_∅.
        ratio: r.

    Returns:
        [R, V] z′, in the dtype of the inputs.
    """
    return (1.0 + ratio) * principled - ratio * plain


def principled_nucleus(principled: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """[R, V] bool: the tokens in the top-p nucleus of softmax(z_P / T), the most likely one always.

    A token is kept when the probability of the tokens more likely than it is below ``top_p`` (the
    rule of transformers' ``TopPLogitsWarper`` and of the authors' code). T = 0 (greedy) reads T = 1.
    """
    probs = torch.softmax(principled / (temperature or 1.0), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p
    keep_sorted[:, 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def next_token_scores(principled: torch.Tensor, plain: torch.Tensor, alignment: LinearAlignment,
                      temperature: float) -> torch.Tensor:
    """[R, V] scores whose softmax is the linear-alignment distribution p (module docstring): z′ / T
    inside the principled nucleus, −inf outside (z′ itself at T = 0, for the argmax); in the dtype of
    the logits (the sampler passes float32)."""
    scores = aligned_logits(principled, plain, alignment.ratio)
    if temperature > 0:
        scores = scores / temperature
    if alignment.top_p >= 1.0:  # no nucleus: every token (a cumulative sum that rounds to 1 would cut some)
        return scores
    keep = principled_nucleus(principled, temperature, alignment.top_p)
    return scores.masked_fill(~keep, float("-inf"))


class _Context:
    """One of the two contexts of a linear-alignment decode: a KV cache over left-padded rows.

    Positions count only real tokens (``cumsum(mask) − 1``), as transformers' ``generate`` does, so
    a row decodes the same whatever its padding.
    """

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self.model = model
        self.mask = attention_mask
        positions = (attention_mask.cumsum(dim=-1) - 1).masked_fill(attention_mask == 0, 0)
        self.next_position = positions[:, -1:] + 1
        # The cache keyword is `cache` from transformers 5 on, `past_key_values` before.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.cache_key = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self.cache = DynamicCache()
        self.logits = self._forward(input_ids, positions)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[rows, V] float32 logits of the next token; extends the cache by ``input_ids``."""
        out = self.model(input_ids=input_ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self.cache_key: self.cache})
        return out.logits[:, -1].float()

    def advance(self, tokens: torch.Tensor) -> None:
        """Append [rows] ``tokens`` to every row and compute the next logits."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.logits = self._forward(tokens[:, None], self.next_position)
        self.next_position = self.next_position + 1


def decode_aligned(model: torch.nn.Module, principled: tuple[torch.Tensor, torch.Tensor],
                   plain: tuple[torch.Tensor, torch.Tensor], alignment: LinearAlignment, *, temperature: float,
                   max_new_tokens: int, stop_ids: list[int], pad_token_id: int,
                   streamer: Any | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``max_new_tokens`` steps of linear alignment (module docstring) on R rows.

    Sampling draws one ``torch.multinomial`` over [R, V] per step, for every row (a finished row
    gets ``pad_token_id``), as transformers' ``generate`` does, so with r = 0 the same seed draws
    the same tokens as ``generate`` on the principled prompts. The caller seeds the RNG.

    Args:
        model: a causal LM in eval mode.
        principled: ([R, Tp] left-padded ids, [R, Tp] attention mask) of the prompts with the principle.
        plain: ([R, T0] ids, [R, T0] mask) of the same prompts without it.
        alignment: r and the top-p of the principled nucleus.
        temperature: T; 0 takes the argmax.
        max_new_tokens: most decode steps.
        stop_ids: tokens that end a row (kept in it).
        pad_token_id: what a finished row gets.
        streamer: a transformers streamer: ``put`` the prompt, then each step's [R] tokens; ``end``.

    Returns:
        ([R, S] generated ids, S ≤ max_new_tokens, padded after each row's stop token;
        [R, S] log π(token | plain prompt, prefix) at temperature 1, nats).
    """
    contexts = (_Context(model, *principled), _Context(model, *plain))
    stop = torch.tensor(stop_ids, device=plain[0].device)
    done = torch.zeros(plain[0].shape[0], dtype=torch.bool, device=plain[0].device)
    tokens, logps = [], []
    if streamer is not None:
        streamer.put(principled[0].cpu())
    for step in range(max_new_tokens):
        scores = next_token_scores(contexts[0].logits, contexts[1].logits, alignment, temperature)
        if temperature > 0:
            chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            chosen = scores.argmax(dim=-1)
        chosen = torch.where(done, torch.full_like(chosen, pad_token_id), chosen)
        tokens.append(chosen)
        logps.append(torch.log_softmax(contexts[1].logits, dim=-1).gather(1, chosen[:, None]).squeeze(1))
        if streamer is not None:
            streamer.put(chosen.cpu())
        done |= torch.isin(chosen, stop)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        for context in contexts:
            context.advance(chosen)
    if streamer is not None:
        streamer.end()
    return torch.stack(tokens, dim=1), torch.stack(logps, dim=1)


def principled_prompt(prompt: Turns, principle: str) -> Turns:
    """``prompt`` with ``principle`` added: as the system message of a conversation (in front of an
    existing system message's text, on its own line), or as a line in front of a plain-text prompt.
    The authors put the principle in the system prompt; a plain prompt has none, so it goes first."""
    if not is_conversation(prompt):
        return f"{principle}\n{prompt}"
    messages = [dict(m) for m in prompt]
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{principle}\n{messages[0]['content']}"
        return messages
    return [{"role": "system", "content": principle}, *messages]
