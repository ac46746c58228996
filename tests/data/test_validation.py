"""parse_rows: every row checked, the first problem named with its row, the others counted."""

from __future__ import annotations

from typing import Any

import pytest

from selm.data.loading import RowTable
from selm.data.messages import FieldError
from selm.data.validation import LISTED_ROWS, ParsedRow, parse_rows
from selm.errors import DataError


def parse_text(row: dict[str, Any], number: int) -> ParsedRow[str] | None:
    """A row needs 'text': a string (standard) or a list of messages (conversational); 'skip' skips it."""
    if row.get("skip"):
        return None
    if "text" not in row:
        raise FieldError("text", "is missing")
    if not isinstance(row["text"], (str, list)):
        raise FieldError("text", f"must be a string or a list of messages, got {type(row['text']).__name__}")
    return ParsedRow(row["text"], isinstance(row["text"], list), "text")


def table(rows: list[dict[str, Any]], first_number: int = 1) -> RowTable:
    return RowTable("data.jsonl", rows, list(range(first_number, first_number + len(rows))))


def test_valid_rows_in_order_without_the_skipped_ones() -> None:
    values, conversational = parse_rows(table([{"text": "a"}, {"skip": True}, {"text": "b"}]), parse_text)
    assert values == ["a", "b"] and conversational is False
    messages = [{"role": "user", "content": "hi"}]
    assert parse_rows(table([{"text": messages}]), parse_text) == ([messages], True)


def test_the_first_invalid_row_is_named_with_its_own_row_number_and_the_others_counted() -> None:
    rows = [{"text": "ok"}, {"text": 3}, {"text": "ok"}, {}, {"text": None}]
    with pytest.raises(DataError) as info:
        parse_rows(table(rows, first_number=10), parse_text)
    assert str(info.value) == ("data.jsonl: row 11: field 'text' must be a string or a list of messages, got int "
                               "(and 2 more invalid rows: 13, 14)")


def test_at_most_listed_rows_are_listed_by_number() -> None:
    rows = [{"text": 1}] * (LISTED_ROWS + 3)
    with pytest.raises(DataError, match=r"\(and 7 more invalid rows: 2, 3, 4, 5, 6, \.\.\.\)$"):
        parse_rows(table(rows), parse_text)


def test_all_rows_share_one_format() -> None:
    rows = [{"text": "plain"}, {"text": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(DataError, match="data.jsonl: row 2: field 'text' is conversational but row 1 is standard; "
                                        "all rows must use one format"):
        parse_rows(table(rows), parse_text)


def test_a_missing_field_that_looks_misspelled_gets_a_hint() -> None:
    with pytest.raises(DataError, match=r"row 1: field 'text' is missing \(the row has 'txet'; a misspelling\?\)$"):
        parse_rows(table([{"txet": "a"}]), parse_text)
    # Nothing close: the row's columns, so a wrong `field` shows what to set it to.
    with pytest.raises(DataError, match=r"row 1: field 'text' is missing \(the row's columns: prompt, id\)$"):
        parse_rows(table([{"prompt": "a", "id": 3}]), parse_text)


def test_an_empty_table_is_an_error() -> None:
    with pytest.raises(DataError, match="^data.jsonl: no rows$"):
        parse_rows(table([]), parse_text)
