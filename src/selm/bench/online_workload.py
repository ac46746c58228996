"""What both sides of the online bench start from: the prompts, the reward and a model that never stops early.

- **Prompts**: every prompt has the same length (BOS + random token ids), so the work of a round
  does not depend on which prompts a trainer's data loader draws first.
- **Reward**: the mean over a response's tokens of a fixed weight per token id, the fractional part
  of ``id × (√5 − 1) / 2``. It reads the response text (the word-level tokenizer's ``"t<id>"``
  words), so selm's ``function`` judge and TRL's reward function call the same rule; its values are
  spread finely enough that two samples of a prompt practically never tie (selm drops tied pairs,
  TRL keeps them: a tie would change the work).
- **No early stop**: the tokenizer's EOS is one id past the model's vocabulary, and the model's
  generation config names only that id, so no sampler can emit it and every response is exactly
  ``max_new_tokens`` long on both sides (neither TRL's nor selm's hf sampler has to support
  ``min_new_tokens``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from selm.bench.workloads import BOS_ID, ModelShape, build_model, word_tokenizer

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def token_weight(token_id: int) -> float:
    """The reward weight of one token id: the fractional part of ``id × 0.618…``, in [0, 1)."""
    return (token_id * GOLDEN) % 1.0


def text_reward(text: str) -> float:
    """Mean token weight of the ``"t<id>"`` words of ``text`` (other words are ignored); 0 when none."""
    ids = [int(word[1:]) for word in text.split() if word[:1] == "t" and word[1:].isdigit()]
    return sum(token_weight(i) for i in ids) / len(ids) if ids else 0.0


def score(prompt: Any, response: str) -> float:
    """selm's ``function`` judge: the reward of one response (the prompt is not read)."""
    return text_reward(response)


def trl_reward(prompts: list[Any], completions: list[str], **kwargs: Any) -> list[float]:
    """TRL's reward function (``reward_funcs``): the same rule on each completion text."""
    return [text_reward(c) for c in completions]


def online_prompts(count: int, length: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """``count`` prompts of ``length`` token ids each: BOS, then seeded random ids in [3, vocab_size)."""
    g = torch.Generator().manual_seed(seed)
    return [[BOS_ID, *torch.randint(3, vocab_size, (length - 1,), generator=g).tolist()] for _ in range(count)]


def unreachable_eos(shape: ModelShape) -> int:
    """The EOS id of the online bench: one past the model's vocabulary, so it is never sampled."""
    return shape.vocab_size


def online_model(shape: ModelShape) -> torch.nn.Module:
    """``build_model(shape)`` whose config and generation config stop only at the unreachable EOS."""
    model = build_model(shape)
    model.config.eos_token_id = model.generation_config.eos_token_id = unreachable_eos(shape)
    return model


def online_tokenizer(shape: ModelShape):
    """The word-level tokenizer of ``shape`` with EOS at :func:`unreachable_eos`."""
    return word_tokenizer(shape.vocab_size, eos_id=unreachable_eos(shape))


def save_model_folder(model: torch.nn.Module, tokenizer: Any, folder: Path) -> Path:
    """Save weights and tokenizer where selm's loop (``model_name_or_path``) and TRL's reference load them."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model.config._name_or_path = str(folder)
    return folder
