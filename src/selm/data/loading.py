"""Reading rows from a local file or a Hugging Face dataset.

Local files (``.jsonl``, ``.json``, ``.parquet``, ``.csv``) are read directly, so an error can
name the exact line; anything that is not an existing file (a hub id, a local dataset folder) goes
through ``datasets``. Every row keeps a 1-based *row number* used in error messages:

* JSON lines: the line number in the file (blank lines are skipped but still counted), so an
  editor's "go to line" lands on the row;
* JSON list, Parquet, CSV, datasets: the row's 1-based position (CSV: the header is not a row).

CSV cells are strings, and an empty cell is a missing value.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selm.errors import DataError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class RowTable:
    """Rows read from one source, with what error messages need to point at them.

    Attributes:
        name: the source as the user gave it (file path or dataset id).
        rows: the rows, one dict per example.
        row_numbers: 1-based row number of each row (see the module docstring).
    """

    name: str
    rows: list[dict[str, Any]]
    row_numbers: list[int]

    def where(self, i: int) -> str:
        """``"<name>: row <n>"`` for the i-th row (0-based), the prefix of every row error."""
        return f"{self.name}: row {self.row_numbers[i]}"


def load_rows(source: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Read every row of a local file or dataset as a list of dicts.

    Args:
        source: a ``.jsonl`` / ``.json`` (JSON lines or one JSON list) / ``.parquet`` / ``.csv``
            file, or, when that is not an existing file, a Hugging Face dataset id or a local
            dataset folder (read with ``datasets.load_dataset``, or ``load_from_disk`` for a
            folder written by ``save_to_disk``).
        split: the dataset split; ignored for files. Default: ``train``, or the only split.

    Raises:
        DataError: missing file, unsupported suffix, invalid JSON (naming the line), a row that is
            not an object, or a dataset that cannot be loaded.
    """
    return load_table(source, split).rows


def load_table(source: str | Path, split: str | None = None) -> RowTable:
    """Like :func:`load_rows`, keeping the source name and row numbers for error messages."""
    name = str(source)
    path = Path(name).expanduser()
    if path.is_file():
        return _read_file(path, name)
    if path.suffix.lower() in FILE_SUFFIXES:
        # Looks like a file the user meant to point at: say so, instead of a confusing hub error.
        raise DataError(f"{name}: no such file")
    if name.startswith((".", "/", "~")) and not path.exists():
        # A path, not a hub id: fail now rather than after datasets' network retries.
        raise DataError(f"{name}: no such file or folder")
    return _read_dataset(name, path, split)


def _read_file(path: Path, name: str) -> RowTable:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, name)
    if suffix == ".csv":
        return _read_csv(path, name)
    if suffix in (".jsonl", ".json"):
        return _read_json(path, name)
    raise DataError(f"{name}: unsupported file type '{path.suffix}'; use one of {', '.join(FILE_SUFFIXES)} "
                    f"or a Hugging Face dataset")


def _read_text(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _check_object(value: Any, name: str, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{name}: {label}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_json(path: Path, name: str) -> RowTable:
    text = _read_text(path, name)
    if text.lstrip().startswith("["):
        # One JSON list of row objects.
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        rows = [_check_object(row, name, f"row {i}") for i, row in enumerate(data, start=1)]
        return RowTable(name, rows, list(range(1, len(rows) + 1)))
    rows, numbers = [], []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {line_number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        rows.append(_check_object(row, name, f"line {line_number}"))
        numbers.append(line_number)
    return RowTable(name, rows, numbers)


def _read_parquet(path: Path, name: str) -> RowTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{name}: cannot read Parquet ({_first_line(exc)})") from None
    return RowTable(name, rows, list(range(1, len(rows) + 1)))


def _read_csv(path: Path, name: str) -> RowTable:
    # Every cell is a string: conversational (message-list) data needs JSON lines, Parquet or a dataset.
    # An empty cell is CSV's only way to leave a value out, so it reads as missing (None).
    with path.open(newline="", encoding="utf-8") as handle:
        try:
            rows = [{key: value if value != "" else None for key, value in row.items()}
                    for row in csv.DictReader(handle)]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{name}: cannot read CSV ({_first_line(exc)})") from None
    for i, row in enumerate(rows, start=1):
        if None in row:
            raise DataError(f"{name}: row {i}: more cells than header columns")
    return RowTable(name, rows, list(range(1, len(rows) + 1)))


def _read_dataset(name: str, path: Path, split: str | None) -> RowTable:
    import datasets

    try:
        if path.is_dir() and any((path / marker).is_file() for marker in ("dataset_info.json", "dataset_dict.json")):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path) if path.is_dir() else name, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many unrelated types; all mean "cannot load"
        raise DataError(f"{name}: not a local file, and datasets cannot load it ({_first_line(exc)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded[_pick_split(name, list(loaded), split)]
    rows = loaded.to_list()
    return RowTable(name, rows, list(range(1, len(rows) + 1)))


def _pick_split(name: str, available: list[str], split: str | None) -> str:
    if split is not None:
        if split not in available:
            raise DataError(f"{name}: no split '{split}'; available: {', '.join(available)}")
        return split
    if "train" in available:
        return "train"
    if len(available) == 1:
        return available[0]
    raise DataError(f"{name}: several splits ({', '.join(available)}); choose one with a split setting")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
