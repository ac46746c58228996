"""tokenize_prompt / tokenize_response: exact boundary, one BOS, one EOS, chat templates."""

from __future__ import annotations

import pytest
from tokenizers import processors

from selm.data import (
    adds_bos,
    encode_prompt,
    encode_response,
    render_prompt,
    tokenize_prompt,
    tokenize_response,
)
from selm.errors import DataError
from selm.modeling.tiny import CHAT_TEMPLATE, build_tokenizer

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
REPLY = [{"role": "assistant", "content": "hi there"}]


def raw_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_adds_bos_detection(tokenizer, bos_tokenizer) -> None:
    assert adds_bos(tokenizer) is False
    assert adds_bos(bos_tokenizer) is True


def test_plain_text_boundary_is_exact(tokenizer) -> None:
    prompt, response = "Question: what is the capital of France?", " Answer: Paris."
    prompt_ids = tokenize_prompt(tokenizer, prompt)
    response_ids = tokenize_response(tokenizer, prompt, response)
    eos = tokenizer.eos_token_id
    assert prompt_ids == raw_ids(tokenizer, prompt)
    assert prompt_ids + response_ids == raw_ids(tokenizer, prompt + response) + [eos]
    assert tokenizer.decode(prompt_ids) == prompt
    assert tokenizer.decode(response_ids) == response + "</s>"
    assert response_ids.count(eos) == 1 and response_ids[-1] == eos


def test_bos_is_added_once_when_the_tokenizer_adds_it(bos_tokenizer) -> None:
    bos, eos = bos_tokenizer.bos_token_id, bos_tokenizer.eos_token_id
    prompt_ids = tokenize_prompt(bos_tokenizer, "2+2=")
    response_ids = tokenize_response(bos_tokenizer, "2+2=", " 4")
    assert prompt_ids == [bos] + raw_ids(bos_tokenizer, "2+2=")
    assert response_ids == raw_ids(bos_tokenizer, " 4") + [eos]
    # Text that already starts with BOS (as many chat templates write it) gets no second one.
    assert tokenize_prompt(bos_tokenizer, "<s>2+2=") == prompt_ids


def test_no_bos_for_a_tokenizer_that_adds_none(tokenizer) -> None:
    assert tokenizer.bos_token_id not in tokenize_prompt(tokenizer, "2+2=")


def test_response_already_ending_with_eos_gets_no_second_one(tokenizer) -> None:
    eos = tokenizer.eos_token_id
    assert tokenize_response(tokenizer, "2+2=", " 4</s>") == raw_ids(tokenizer, " 4") + [eos]


def test_merge_across_the_boundary_falls_back_to_separate_tokenization(tokenizer) -> None:
    prompt = encode_prompt(tokenizer, "The quick bro")
    # The tokenizer knows "brown": the joint text does not start with the prompt's own tokens.
    assert raw_ids(tokenizer, "The quick brown fox")[:len(prompt.ids)] != prompt.ids
    response = encode_response(tokenizer, prompt, "wn fox")
    assert response.boundary_fallback is True
    assert response.ids == raw_ids(tokenizer, "wn fox") + [tokenizer.eos_token_id]
    assert tokenizer.decode(prompt.ids) + tokenizer.decode(response.ids[:-1]) == "The quick brown fox"
    assert encode_response(tokenizer, prompt, " fox").boundary_fallback is False


def test_conversation_uses_the_chat_template(tokenizer) -> None:
    expected_prompt = "<|system|>\nBe brief.\n<|user|>\nhello\n<|assistant|>\n"
    assert render_prompt(tokenizer, CHAT) == expected_prompt
    prompt_ids = tokenize_prompt(tokenizer, CHAT)
    response_ids = tokenize_response(tokenizer, CHAT, REPLY)
    assert prompt_ids == raw_ids(tokenizer, expected_prompt)
    # The template writes no EOS, so exactly one is appended after the turn.
    assert response_ids == raw_ids(tokenizer, "hi there\n") + [tokenizer.eos_token_id]
    assert tokenizer.decode(prompt_ids + response_ids) == expected_prompt + "hi there\n</s>"


def test_template_end_of_turn_eos_is_not_duplicated(eos_template_tokenizer) -> None:
    tok = eos_template_tokenizer
    eos = tok.eos_token_id
    prompt_ids = tokenize_prompt(tok, CHAT)
    response_ids = tokenize_response(tok, CHAT, REPLY)
    assert tok.decode(prompt_ids) == "<|system|>\nBe brief.</s>\n<|user|>\nhello</s>\n<|assistant|>\n"
    # "<eos>\n" closes the turn: the newline after the EOS is dropped, no second EOS is added.
    assert response_ids == raw_ids(tok, "hi there") + [eos]
    assert response_ids.count(eos) == 1


def test_template_bos_and_tokenizer_bos_give_one_bos() -> None:
    tok = build_tokenizer(chat_template="{{ bos_token }}" + CHAT_TEMPLATE)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    ids = tokenize_prompt(tok, CHAT)
    assert ids[0] == tok.bos_token_id
    assert ids.count(tok.bos_token_id) == 1
    assert tokenize_response(tok, CHAT, REPLY) == raw_ids(tok, "hi there\n") + [tok.eos_token_id]


def test_missing_chat_template_is_a_data_error() -> None:
    tok = build_tokenizer(chat_template=None)
    with pytest.raises(DataError) as info:
        tokenize_prompt(tok, CHAT)
    assert str(info.value) == (f"tokenizer '{type(tok).__name__}' has no chat template; conversational data "
                               f"(lists of messages) needs one: set chat_template in the recipe (a template or a "
                               f"file) or use plain-text rows")


def test_template_that_renders_the_prompt_inconsistently_is_an_error() -> None:
    # Like templates that open a <think> block only in the generation prompt.
    template = CHAT_TEMPLATE.replace("'<|assistant|>\n'", "'<|assistant|>\n<think>\n'")
    tok = build_tokenizer(chat_template=template)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(DataError) as info:
        tokenize_response(tok, messages, REPLY)
    assert str(info.value).endswith(
        "they diverge at character 26: prompt ...'<|user|>\\nhi\\n<|assistant|>\\n<think>\\n' vs "
        "prompt+response ...'<|user|>\\nhi\\n<|assistant|>\\nhi there\\n'")
    assert "renders the prompt differently alone" in str(info.value)


def test_template_exception_is_a_data_error() -> None:
    tok = build_tokenizer(chat_template="{{ raise_exception('Conversation roles must alternate') }}")
    with pytest.raises(DataError) as info:
        tokenize_prompt(tok, CHAT)
    assert str(info.value) == (f"chat template of tokenizer '{type(tok).__name__}' rejected the messages: "
                               f"Conversation roles must alternate")


def test_prompt_and_response_formats_must_match(tokenizer) -> None:
    with pytest.raises(DataError, match="both be text or both be lists of messages"):
        tokenize_response(tokenizer, CHAT, "plain")
