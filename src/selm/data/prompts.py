"""Prompt-only data for the online loop: one prompt (text or messages) per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selm.data.loading import load_table
from selm.data.messages import Turns, check_prompt, check_turns, is_conversation
from selm.data.validation import ParsedRow, parse_rows


def load_prompts(source: str | Path, split: str | None = None, field: str = "prompt") -> list[Turns]:
    """Load and validate the prompts in column ``field`` of a file or dataset, in source order.

    Args:
        source: file or dataset (see :func:`selm.data.load_rows`).
        split: dataset split.
        field: the column holding the prompt: a non-empty string, or a list of messages that ends
            before the assistant's turn. Other columns are ignored.

    Returns:
        One prompt per row; all strings or all message lists.

    Raises:
        DataError: naming file, row and field for a missing or invalid prompt or mixed formats.
    """
    table = load_table(source, split)

    def parse(row: dict[str, Any], number: int) -> ParsedRow[Turns]:
        prompt = check_prompt(check_turns(row, field), field)
        return ParsedRow(prompt, is_conversation(prompt), field)

    prompts, _ = parse_rows(table, parse)
    return prompts
