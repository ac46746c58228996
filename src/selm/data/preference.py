"""Preference data: (prompt, chosen, rejected[, explore]) rows, validated before any training.

Two formats, as in TRL, and one per dataset:

* standard: ``prompt``, ``chosen``, ``rejected`` are strings;
* conversational: ``prompt`` is a list of ``{"role", "content"}`` messages and ``chosen`` /
  ``rejected`` are the assistant's messages. Without a ``prompt`` key (TRL's implicit-prompt
  form) ``chosen`` and ``rejected`` are whole conversations and their shared leading messages
  become the prompt.

``explore`` (optional, same format as ``chosen``) is the exploration response of the SELM / XPO
objectives. Other keys are kept in :attr:`PreferencePair.extra`. Rows whose chosen and rejected
responses are equal teach nothing: they are skipped, counted and reported in a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from selm.data.loading import load_table
from selm.data.messages import (
    FieldError,
    Turns,
    check_prompt,
    check_response,
    check_turns,
    common_prefix_length,
    is_conversation,
    kind_name,
)
from selm.data.validation import LISTED_ROWS, ParsedRow, parse_rows
from selm.errors import DataError

PAIR_FIELDS = ("prompt", "chosen", "rejected", "explore")


@dataclass(frozen=True)
class PreferencePair:
    """One validated preference row.

    Attributes:
        prompt: the prompt text, or its messages.
        chosen: the preferred response (text, or assistant messages).
        rejected: the dispreferred response, same format.
        index: the source row number (1-based, as in error messages).
        explore: the exploration response (SELM / XPO), or None.
        extra: the row's other fields, untouched.
    """

    prompt: Turns
    chosen: Turns
    rejected: Turns
    index: int
    explore: Turns | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conversational(self) -> bool:
        return is_conversation(self.prompt)


@dataclass(frozen=True)
class PreferenceDataset(Sequence[PreferencePair]):
    """The valid pairs of one source, in source order; behaves as a read-only list of pairs.

    Attributes:
        name: the source as given (file path or dataset id).
        pairs: the pairs kept.
        conversational: True for conversational data, False for standard.
        skipped_identical: row numbers skipped because chosen == rejected.
    """

    name: str
    pairs: list[PreferencePair]
    conversational: bool
    skipped_identical: list[int]

    @overload
    def __getitem__(self, i: int) -> PreferencePair: ...
    @overload
    def __getitem__(self, i: slice) -> list[PreferencePair]: ...

    def __getitem__(self, i: int | slice) -> PreferencePair | list[PreferencePair]:
        return self.pairs[i]

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[PreferencePair]:
        return iter(self.pairs)


def load_preference_data(source: str | Path, split: str | None = None) -> PreferenceDataset:
    """Load and validate preference rows from a file or dataset (see :func:`selm.data.load_rows`).

    Raises:
        DataError: naming file, row and field for a missing field, a wrong type, an empty string,
            a broken message, rows mixing the standard and conversational formats, or no usable row.

    Warns:
        UserWarning: how many rows were skipped because chosen == rejected, and which.
    """
    table = load_table(source, split)
    identical: list[int] = []

    def parse(row: dict[str, Any], number: int) -> ParsedRow[PreferencePair] | None:
        pair = _parse_pair(row, number)
        if pair is None:
            identical.append(number)
            return None
        return ParsedRow(pair, pair.conversational, "prompt" if row.get("prompt") is not None else "chosen")

    pairs, conversational = parse_rows(table, parse)
    if identical:
        listed = ", ".join(map(str, identical[:LISTED_ROWS])) + (", ..." if len(identical) > LISTED_ROWS else "")
        warnings.warn(f"{table.name}: skipped {len(identical)} of {len(table.rows)} rows where chosen == rejected "
                      f"(rows {listed})", UserWarning, stacklevel=2)
    if not pairs:
        raise DataError(f"{table.name}: no usable rows: all {len(table.rows)} have chosen == rejected")
    return PreferenceDataset(table.name, pairs, conversational, identical)


def _parse_pair(row: dict[str, Any], number: int) -> PreferencePair | None:
    """The row as a pair; None when chosen == rejected (a tie, which teaches nothing)."""
    chosen = check_turns(row, "chosen")
    rejected = check_turns(row, "rejected")
    if row.get("prompt") is not None:
        prompt = check_turns(row, "prompt")
    elif is_conversation(chosen) and is_conversation(rejected):
        if chosen == rejected:
            return None
        prompt, chosen, rejected = _split_implicit_prompt(chosen, rejected)
    else:
        raise FieldError("prompt", "is missing")
    explore = check_turns(row, "explore") if row.get("explore") is not None else None

    conversational = is_conversation(prompt)
    for name, value in (("chosen", chosen), ("rejected", rejected), ("explore", explore)):
        if value is not None and is_conversation(value) != conversational:
            raise FieldError(name, f"is {kind_name(not conversational)} but field 'prompt' is "
                                   f"{kind_name(conversational)}; a row is all strings or all message lists")
    check_prompt(prompt, "prompt")
    for name, value in (("chosen", chosen), ("rejected", rejected), ("explore", explore)):
        if value is not None:
            check_response(value, name)
    if chosen == rejected:
        return None
    extra = {key: value for key, value in row.items() if key not in PAIR_FIELDS}
    return PreferencePair(prompt, chosen, rejected, number, explore, extra)


def _split_implicit_prompt(chosen: list[Any], rejected: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """(prompt, chosen response, rejected response) from two different full conversations."""
    n = common_prefix_length(chosen, rejected)
    if n == 0:
        raise FieldError("prompt", "is missing, and 'chosen' and 'rejected' share no leading messages "
                                   "to take as the prompt")
    if chosen[n - 1]["role"] == "assistant":
        raise FieldError("chosen", "and 'rejected' share messages up to an assistant message; without a "
                                   "'prompt' field the shared messages (the prompt) must end before the "
                                   "assistant's turn")
    for name, conversation in (("chosen", chosen), ("rejected", rejected)):
        if len(conversation) == n:
            raise FieldError(name, "has no messages after the prompt it shares with the other response")
    return chosen[:n], chosen[n:], rejected[n:]
