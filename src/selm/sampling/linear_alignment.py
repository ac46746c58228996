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

from collections.abc import Callable
from dataclasses import dataclass

import torch

from selm.data.messages import Turns, is_conversation
from selm.errors import ConfigError
from selm.sampling.decoding import CachedContext, decode, nucleus


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

    The rule of transformers' ``TopPLogitsWarper`` and of the authors' code (:func:`nucleus`).
    T = 0 (greedy) reads T = 1.
    """
    return nucleus(principled / (temperature or 1.0), top_p)


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


def decode_aligned(model: torch.nn.Module, principled: tuple[torch.Tensor, torch.Tensor],
                   plain: tuple[torch.Tensor, torch.Tensor], alignment: LinearAlignment, *, temperature: float,
                   max_new_tokens: int, stop_ids: list[int], pad_token_id: int, repeats: int = 1,
                   on_step: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``max_new_tokens`` steps of linear alignment (module docstring) on R = P × ``repeats`` rows.

    Both contexts go through :func:`selm.sampling.decoding.decode`, the plain backend's loop, with
    the same draw, so with r = 0 the same seed draws the same tokens as plain decoding of the
    principled prompts. The caller seeds the RNG.

    Args:
        model: a causal LM in eval mode.
        principled: ([P, Tp] left-padded ids, [P, Tp] attention mask) of the prompts with the principle.
        plain: ([P, T0] ids, [P, T0] mask) of the same prompts without it.
        alignment: r and the top-p of the principled nucleus.
        temperature: T; 0 takes the argmax.
        max_new_tokens: most decode steps.
        stop_ids: tokens that end a row (kept in it).
        pad_token_id: what a finished row gets.
        repeats: rows per prompt (each prompt is prefilled once).
        on_step: as in :func:`selm.sampling.decoding.decode`.

    Returns:
        ([R, S] generated ids, S ≤ max_new_tokens, padded after each row's stop token;
        [R, S] log π(token | plain prompt, prefix) at temperature 1, nats).
    """
    contexts = tuple(CachedContext(model, *prompts, repeats=repeats, room=max_new_tokens) for prompts in (principled, plain))
    return decode(contexts, lambda logits: next_token_scores(logits[0], logits[1], alignment, temperature),
                  greedy=temperature == 0.0, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                  pad_token_id=pad_token_id, logprob_context=1, on_step=on_step)


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
