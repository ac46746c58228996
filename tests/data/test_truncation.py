"""Truncation rules: how much of a prompt is kept, which end, and the counts' summary line."""

from __future__ import annotations

import pytest

from selm.data.truncation import TruncationStats, keep_prompt_end, prompt_budget


@pytest.mark.parametrize("prompt,longest,max_length,max_prompt,expected", [
    (10, 5, 64, None, 10),    # everything fits: nothing cut
    (60, 20, 64, None, 44),   # cut only as far as the longest response needs
    (60, 50, 64, None, 32),   # ... but never below max_length // 2
    (60, 5, 64, 16, 16),      # max_prompt_length decides when set
    (8, 5, 64, 16, 8),        # and never lengthens a prompt
])
def test_prompt_budget(prompt: int, longest: int, max_length: int, max_prompt: int | None, expected: int) -> None:
    assert prompt_budget(prompt, longest, max_length, max_prompt) == expected


def test_keep_prompt_end_keeps_the_last_tokens() -> None:
    assert keep_prompt_end([5, 6, 7, 8, 9], 3, bos_token_id=None) == [7, 8, 9]
    assert keep_prompt_end([5, 6, 7], 3, bos_token_id=None) == [5, 6, 7]
    assert keep_prompt_end([5, 6, 7], 10, bos_token_id=1) == [5, 6, 7]


def test_keep_prompt_end_keeps_a_leading_bos_in_front() -> None:
    assert keep_prompt_end([1, 5, 6, 7, 8], 3, bos_token_id=1) == [1, 7, 8]
    # With room for one token only, the question's last token wins over BOS.
    assert keep_prompt_end([1, 5, 6, 7, 8], 1, bos_token_id=1) == [8]
    # BOS is only kept when the prompt starts with it.
    assert keep_prompt_end([5, 6, 7, 8], 3, bos_token_id=1) == [6, 7, 8]


def test_summary_names_every_count() -> None:
    stats = TruncationStats(rows=100, kept=97, truncated_prompts=3, truncated_responses=5, dropped_no_room=2,
                            dropped_identical=1, boundary_fallbacks=4)
    assert stats.summary() == ("100 rows, 97 kept; truncated 3 prompts, 5 responses; dropped 2 (no room for a "
                               "response), 1 (chosen == rejected after truncation); 4 boundary fallbacks")
