"""Prompts and responses to token ids, with an exact prompt/response boundary.

One code path serves generation prompts (the online loop) and training pairs, so the policy is
trained on exactly the prompt tokens it is sampled from. The rules:

* Rendering. Plain text is used as is; a conversation is rendered with the tokenizer's chat
  template: the prompt with ``add_generation_prompt=True``, prompt+response without it. The prompt
  rendering must be a prefix of the prompt+response rendering, else a DataError shows where the two
  diverge (a template that, e.g., adds ``<think>`` only to generation prompts) instead of training
  on misaligned tokens.
* Boundary. The prompt text and the prompt+response text are tokenized; the response ids are the
  suffix after the prompt ids. When the tokenizer merges across the boundary (prompt ``"bro"`` +
  response ``"wn"`` tokenizes as ``"brown"``), the prompt ids are not a prefix of the joint ids:
  the response is then tokenized on its own and appended (the *boundary fallback*, counted by
  :func:`encode_response`), so the prompt ids are always exactly the ones used for generation.
* BOS. Text is tokenized without special tokens; the tokenizer's BOS is put in front of the prompt
  once, iff the tokenizer adds one by itself (``tokenizer("x")`` starts with it) and the rendered
  text does not already start with it (chat templates often write it).
* EOS. Every response ends with exactly one ``eos_token_id``: appended unless already last. For a
  conversation whose template ends the assistant's turn with the EOS token (``<|im_end|>``), what
  follows the last EOS is only template whitespace (``"\\n"``); it is dropped rather than adding a
  second EOS after it, so the response ends where generation stops.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any

from selm.data.messages import Message, Turns, is_conversation
from selm.errors import DataError

# Characters shown on each side of the point where two renderings diverge.
DIFF_CONTEXT = 30

_adds_bos_cache: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt rendered to text and tokenized.

    Attributes:
        prompt: the prompt as given (text or messages).
        text: the rendered text (chat template applied to messages).
        ids: its token ids, BOS included when the tokenizer adds one.
        bos_added: whether ``ids[0]`` is a BOS put in front of the text's own tokens.
    """

    prompt: Turns
    text: str
    ids: list[int]
    bos_added: bool

    @property
    def text_ids(self) -> list[int]:
        """The tokens of ``text`` alone (no added BOS): what the joint tokenization must start with."""
        return self.ids[1:] if self.bos_added else self.ids


@dataclass(frozen=True)
class EncodedResponse:
    """A response's token ids (ending with EOS) and whether the boundary fallback was used."""

    ids: list[int]
    boundary_fallback: bool


def tokenizer_name(tokenizer: Any) -> str:
    """The tokenizer's path or hub id, or its class name when it has none (built in memory)."""
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def adds_bos(tokenizer: Any) -> bool:
    """True when the tokenizer puts BOS in front of text by itself (Llama) and False when not (Qwen)."""
    try:
        return _adds_bos_cache[tokenizer]
    except (KeyError, TypeError):
        pass
    bos = tokenizer.bos_token_id
    with_special = tokenizer("x")["input_ids"]
    without = tokenizer("x", add_special_tokens=False)["input_ids"]
    result = bos is not None and with_special[:1] == [bos] and without[:1] != [bos]
    try:
        _adds_bos_cache[tokenizer] = result
    except TypeError:  # not weak-referenceable: just recompute next time
        pass
    return result


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _chat_template(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError(f"tokenizer '{tokenizer_name(tokenizer)}' has no chat template; conversational data "
                        f"(lists of messages) needs one: set chat_template in the recipe (a template or a file) or use plain-text rows")
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - Jinja raises TemplateError or whatever the template raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"chat template of tokenizer '{tokenizer_name(tokenizer)}' rejected the messages: "
                        f"{first}") from None
    if not isinstance(text, str):
        raise DataError(f"chat template of tokenizer '{tokenizer_name(tokenizer)}' returned "
                        f"{type(text).__name__}, not text")
    return text


def render_prompt(tokenizer: Any, prompt: Turns) -> str:
    """The prompt as text: plain text as is, messages through the chat template with the
    generation prompt (the assistant-turn header) added.

    Raises:
        DataError: conversational prompt and the tokenizer has no chat template.
    """
    if is_conversation(prompt):
        return _chat_template(tokenizer, prompt, add_generation_prompt=True)
    return prompt


def encode_prompt(tokenizer: Any, prompt: Turns) -> EncodedPrompt:
    """Render and tokenize a prompt; BOS is added once iff the tokenizer adds one (see module doc)."""
    text = render_prompt(tokenizer, prompt)
    ids = _ids(tokenizer, text)
    bos = tokenizer.bos_token_id
    bos_added = adds_bos(tokenizer) and ids[:1] != [bos]
    return EncodedPrompt(prompt, text, [bos] + ids if bos_added else ids, bos_added)


def tokenize_prompt(tokenizer: Any, prompt: Turns) -> list[int]:
    """Token ids of a prompt, exactly as training pairs see it: feed these to the sampler.

    Returns:
        [P] token ids (python ints).
    """
    return encode_prompt(tokenizer, prompt).ids


def _response_text(tokenizer: Any, prompt: EncodedPrompt, response: Turns) -> str:
    """The text that follows the rendered prompt when the response is appended to it."""
    if is_conversation(prompt.prompt) != is_conversation(response):
        raise DataError("prompt and response must both be text or both be lists of messages")
    if not is_conversation(response):
        return response
    full = _chat_template(tokenizer, [*prompt.prompt, *response], add_generation_prompt=False)
    if not full.startswith(prompt.text):
        k = len(os.path.commonprefix([prompt.text, full]))
        lo = max(0, k - DIFF_CONTEXT)
        raise DataError(
            f"chat template of tokenizer '{tokenizer_name(tokenizer)}' renders the prompt differently alone "
            f"(with the generation prompt) than followed by the response, so the response tokens cannot be "
            f"located: they diverge at character {k}: prompt ...{prompt.text[lo:k + DIFF_CONTEXT]!r} vs "
            f"prompt+response ...{full[lo:k + DIFF_CONTEXT]!r}")
    return full[len(prompt.text):]


def _end_with_one_eos(tokenizer: Any, ids: list[int], conversational: bool) -> list[int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(f"tokenizer '{tokenizer_name(tokenizer)}' has no EOS token; every response must end with one")
    if conversational and eos in ids:
        last = len(ids) - 1 - ids[::-1].index(eos)
        # Only template whitespace after the end-of-turn EOS is dropped; real text keeps its EOS appended.
        if not tokenizer.decode(ids[last + 1:]).strip():
            return ids[:last + 1]
    return ids if ids[-1:] == [eos] else ids + [eos]


def encode_response(tokenizer: Any, prompt: EncodedPrompt, response: Turns) -> EncodedResponse:
    """Token ids of ``response`` as it continues ``prompt`` (see the module doc for the rules).

    Returns:
        EncodedResponse with [R] ids ending in exactly one EOS, and whether the boundary fallback
        (response tokenized on its own) was needed.
    """
    text = _response_text(tokenizer, prompt, response)
    prompt_ids = prompt.text_ids
    joint = _ids(tokenizer, prompt.text + text)
    fallback = joint[:len(prompt_ids)] != prompt_ids
    ids = _ids(tokenizer, text) if fallback else joint[len(prompt_ids):]
    return EncodedResponse(_end_with_one_eos(tokenizer, ids, is_conversation(response)), fallback)


def tokenize_response(tokenizer: Any, prompt: Turns | EncodedPrompt, response: Turns) -> list[int]:
    """Token ids of a response to ``prompt``: ``tokenize_prompt(prompt) + these`` is the sequence.

    Args:
        tokenizer: a transformers tokenizer.
        prompt: the prompt (text or messages), or its :class:`EncodedPrompt` to skip re-rendering.
        response: text for a text prompt; assistant messages for a conversational one.

    Returns:
        [R] token ids (python ints) ending with exactly one EOS.
    """
    encoded = prompt if isinstance(prompt, EncodedPrompt) else encode_prompt(tokenizer, prompt)
    return encode_response(tokenizer, encoded, response).ids
