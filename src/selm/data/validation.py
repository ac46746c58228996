"""Validating every row of a table before any training starts.

All rows are checked, not just up to the first bad one, so the error names the first problem and
how many other rows have one: the user fixes the file once instead of once per bad row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from selm.data.loading import RowTable
from selm.data.messages import FieldError, kind_name
from selm.errors import DataError

T = TypeVar("T")

# How many further bad rows an error message lists by number.
LISTED_ROWS = 5


@dataclass(frozen=True)
class ParsedRow(Generic[T]):
    """A valid row's value, its format, and the field that decided the format (for messages)."""

    value: T
    conversational: bool
    format_field: str


def parse_rows(table: RowTable, parse: Callable[[dict[str, Any], int], ParsedRow[T] | None]
               ) -> tuple[list[T], bool]:
    """Apply ``parse(row, row_number)`` to every row; all rows must share one format.

    ``parse`` raises :class:`FieldError` for an invalid row and returns None for a row it
    deliberately skips (the caller counts and reports those).

    Returns:
        (values of the rows not skipped, whether the data is conversational).

    Raises:
        DataError: ``"<file>: row <n>: field '<f>' <problem>"`` for the first invalid row, with the
            count and numbers of the other invalid rows; or when the table has no rows.
    """
    if not table.rows:
        raise DataError(f"{table.name}: no rows")
    values: list[T] = []
    errors: list[tuple[int, FieldError]] = []
    first: tuple[bool, int] | None = None  # (format, row number) of the first valid row
    for i, row in enumerate(table.rows):
        number = table.row_numbers[i]
        try:
            parsed = parse(row, number)
            if parsed is None:
                continue
            if first is None:
                first = (parsed.conversational, number)
            elif parsed.conversational != first[0]:
                raise FieldError(parsed.format_field,
                                 f"is {kind_name(parsed.conversational)} but row {first[1]} is "
                                 f"{kind_name(first[0])}; all rows must use one format "
                                 f"(standard: strings, conversational: lists of messages)")
            values.append(parsed.value)
        except FieldError as exc:
            errors.append((i, exc))
    if errors:
        i, exc = errors[0]
        message = f"{table.where(i)}: {exc}{_misspelling_hint(exc, table.rows[i])}"
        if len(errors) > 1:
            others = [str(table.row_numbers[j]) for j, _ in errors[1:1 + LISTED_ROWS]]
            more = ", ..." if len(errors) - 1 > LISTED_ROWS else ""
            message += f" (and {len(errors) - 1} more invalid rows: {', '.join(others)}{more})"
        raise DataError(message)
    return values, bool(first and first[0])


def _misspelling_hint(exc: FieldError, row: Any) -> str:
    """`` (the row has 'rejcted'; a misspelling?)`` when a missing field resembles a present one,
    else the row's columns (`` (the row's columns: text, label)``), so a wrong ``field`` setting
    shows what to set it to."""
    if not exc.problem.startswith("is missing") or not isinstance(row, dict):
        return ""
    import difflib

    columns = [str(k) for k in row if k != exc.field]
    close = difflib.get_close_matches(exc.field, columns, n=1, cutoff=0.75)
    if close:
        return f" (the row has '{close[0]}'; a misspelling?)"
    return f" (the row's columns: {', '.join(columns)})" if columns and exc.problem == "is missing" else ""
