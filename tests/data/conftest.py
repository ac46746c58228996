"""Fixtures for the data tests: tiny local tokenizers and writers for every file format."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import processors

from selm.modeling.tiny import BOS, build_tokenizer

# A ChatML-like template that ends each turn with the EOS token, as Qwen's does with <|im_end|>.
EOS_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tokenizer():
    """Byte-level BPE that adds no special tokens by itself (like Qwen); ChatML-like template."""
    return build_tokenizer()


@pytest.fixture(scope="session")
def bos_tokenizer():
    """The same vocabulary, but ``tokenizer("x")`` starts with <s> (like Llama)."""
    tok = build_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.bos_token_id)])
    return tok


@pytest.fixture(scope="session")
def eos_template_tokenizer():
    """A tokenizer whose chat template closes every turn with the EOS token and a newline."""
    return build_tokenizer(chat_template=EOS_TEMPLATE)


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _write_json(path: Path, rows: list[Any]) -> None:
    path.write_text(json.dumps(rows, indent=2))


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    # from_pylist takes its columns from the first row: name every column in every row (null if absent).
    columns = _columns(rows)
    pq.write_table(pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows]), path)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)


WRITERS = {".jsonl": _write_jsonl, ".json": _write_json, ".parquet": _write_parquet, ".csv": _write_csv}


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, list[Any]], str]:
    """``write("name.<suffix>", rows) -> path``: the rows in the format the suffix names."""

    def write_rows(name: str, rows: list[Any]) -> str:
        path = tmp_path / name
        WRITERS[path.suffix](path, rows)
        return str(path)

    return write_rows
