"""tokenize_preference_pairs: truncation keeps the prompt's end and the responses' starts, and counts."""

from __future__ import annotations

import pytest

from selm.data import (
    PreferencePair,
    TokenizedPair,
    TruncationStats,
    tokenize_preference_pairs,
)
from selm.errors import ConfigError, DataError
from selm.modeling.tiny import build_tokenizer


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def numbers(n: int, digit: int) -> str:
    """``" d d d"``: n tokens with the tiny tokenizer (one per space+digit)."""
    return f" {digit}" * n


# Prompt "sort:" + k × " 1" is 2 + k tokens; a response of m × " d" is m tokens + EOS.
def prompt_of(k: int) -> str:
    return "sort:" + numbers(k, 1)


def test_short_pairs_are_untouched(tokenizer) -> None:
    pairs = [PreferencePair("2+2=", " 4", " 5", index=3, explore=" 6")]
    out, stats = tokenize_preference_pairs(pairs, tokenizer, max_length=64)
    eos = tokenizer.eos_token_id
    assert out == [TokenizedPair(3, ids(tokenizer, "2+2="), ids(tokenizer, " 4") + [eos],
                                 ids(tokenizer, " 5") + [eos], ids(tokenizer, " 6") + [eos])]
    assert stats == TruncationStats(rows=1, kept=1)


def test_max_prompt_length_keeps_the_prompt_end(tokenizer, bos_tokenizer) -> None:
    pair = PreferencePair(prompt_of(8), numbers(2, 2), numbers(2, 3), index=1)
    full = ids(tokenizer, prompt_of(8))  # 10 tokens
    out, stats = tokenize_preference_pairs([pair], tokenizer, max_length=64, max_prompt_length=4)
    assert out[0].prompt_ids == full[-4:]
    assert stats.truncated_prompts == 1 and stats.truncated_responses == 0
    # A leading BOS stays in front of the kept end.
    out, _ = tokenize_preference_pairs([pair], bos_tokenizer, max_length=64, max_prompt_length=4)
    assert out[0].prompt_ids == [bos_tokenizer.bos_token_id] + full[-3:]


def test_responses_are_cut_at_the_end(tokenizer) -> None:
    eos = tokenizer.eos_token_id
    pair = PreferencePair(prompt_of(2), numbers(6, 2), numbers(1, 3), index=1)  # prompt 4, chosen 7, rejected 2
    out, stats = tokenize_preference_pairs([pair], tokenizer, max_length=8)
    assert out[0].prompt_ids == ids(tokenizer, prompt_of(2))
    assert out[0].chosen_ids == ids(tokenizer, numbers(4, 2))  # cut: no EOS
    assert out[0].rejected_ids == ids(tokenizer, numbers(1, 3)) + [eos]
    assert stats == TruncationStats(rows=1, kept=1, truncated_responses=1)


def test_without_max_prompt_length_the_prompt_makes_room_down_to_half(tokenizer) -> None:
    long_prompt = ids(tokenizer, prompt_of(10))  # 12 tokens
    # Short responses (3 + EOS = 4): the prompt gives up just enough, 12 - 4 = 8 tokens kept.
    short = PreferencePair(prompt_of(10), numbers(3, 2), numbers(3, 3), index=1)
    out, stats = tokenize_preference_pairs([short], tokenizer, max_length=12)
    assert out[0].prompt_ids == long_prompt[-8:]
    assert len(out[0].chosen_ids) == 4
    assert (stats.truncated_prompts, stats.truncated_responses) == (1, 0)
    # A long response: the prompt keeps half of max_length (6) and the responses get the rest.
    long = PreferencePair(prompt_of(10), numbers(20, 2), numbers(3, 3), index=2)
    out, stats = tokenize_preference_pairs([long], tokenizer, max_length=12)
    assert out[0].prompt_ids == long_prompt[-6:]
    assert out[0].chosen_ids == ids(tokenizer, numbers(6, 2))
    assert out[0].rejected_ids == ids(tokenizer, numbers(3, 3)) + [tokenizer.eos_token_id]
    assert (stats.truncated_prompts, stats.truncated_responses) == (1, 1)


def test_explore_is_truncated_like_the_other_responses(tokenizer) -> None:
    pair = PreferencePair(prompt_of(2), numbers(1, 2), numbers(1, 3), index=1, explore=numbers(9, 4))
    out, stats = tokenize_preference_pairs([pair], tokenizer, max_length=7, max_prompt_length=4)
    assert out[0].explore_ids == ids(tokenizer, numbers(3, 4))
    assert stats.truncated_responses == 1


def test_dropped_rows_are_counted_and_summarised(tokenizer) -> None:
    pairs = [
        PreferencePair(prompt_of(1), numbers(1, 2), numbers(1, 3), index=1),                # kept
        PreferencePair(prompt_of(8), numbers(1, 2), numbers(1, 3), index=2),                # prompt fills max_length
        PreferencePair(prompt_of(1), numbers(9, 2) + " 5", numbers(9, 2) + " 6", index=3),  # equal once cut
        PreferencePair(prompt_of(1), numbers(9, 2), numbers(1, 3), index=4),                # chosen cut
    ]
    out, stats = tokenize_preference_pairs(pairs, tokenizer, max_length=8, max_prompt_length=8)
    assert [p.index for p in out] == [1, 4]
    assert stats == TruncationStats(rows=4, kept=2, truncated_prompts=0, truncated_responses=1,
                                    dropped_no_room=1, dropped_identical=1)
    assert stats.summary() == ("4 rows, 2 kept; truncated 0 prompts, 1 responses; dropped 1 (no room for a "
                               "response), 1 (chosen == rejected after truncation); 0 boundary fallbacks")


def test_boundary_fallbacks_are_counted(tokenizer) -> None:
    pairs = [PreferencePair("The quick bro", "wn fox", " dog", index=1)]
    out, stats = tokenize_preference_pairs(pairs, tokenizer, max_length=64)
    assert out[0].chosen_ids == ids(tokenizer, "wn fox") + [tokenizer.eos_token_id]
    assert stats.boundary_fallbacks == 1


def test_all_rows_dropped_is_an_error(tokenizer) -> None:
    pairs = [PreferencePair(prompt_of(8), " 2", " 3", index=1)]
    with pytest.raises(DataError, match=r"^truncation to max_length 8 dropped all 1 rows: 1 rows, 0 kept;"):
        tokenize_preference_pairs(pairs, tokenizer, max_length=8, max_prompt_length=8)


def test_tokenization_errors_name_the_row() -> None:
    chat = [{"role": "user", "content": "hi"}]
    pair = PreferencePair(chat, [{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}],
                          index=7)
    tok = build_tokenizer(chat_template=None)
    with pytest.raises(DataError, match=r"^row 7: tokenizer '\w+' has no chat template; conversational data"):
        tokenize_preference_pairs([pair], tok, max_length=64)


@pytest.mark.parametrize("max_length, max_prompt_length, message", [
    (1, None, "max_length: 1 leaves no room for a prompt and a response (minimum 2)"),
    (8, 0, "max_prompt_length: 0 must be at least 1"),
])
def test_impossible_lengths(tokenizer, max_length: int, max_prompt_length: int | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        tokenize_preference_pairs([], tokenizer, max_length, max_prompt_length)
    assert str(info.value) == message


def test_empty_input_gives_empty_output(tokenizer) -> None:
    assert tokenize_preference_pairs([], tokenizer, max_length=8) == ([], TruncationStats())
