"""load_rows / load_table: every file format, row numbers, and one-line errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from selm.data import load_rows, load_table
from selm.errors import DataError

ROWS = [{"prompt": "p1", "chosen": "c1", "rejected": "r1"},
        {"prompt": "p2", "chosen": "c2", "rejected": "r2"}]


@pytest.mark.parametrize("name", ["data.jsonl", "list.json", "data.parquet", "data.csv"])
def test_every_file_format_reads_the_same_rows(write, name: str) -> None:
    path = write(name, ROWS)
    assert load_rows(path) == ROWS
    assert load_table(path).row_numbers == [1, 2]


def test_json_suffix_also_reads_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.json"
    path.write_text('{"prompt": "p1"}\n{"prompt": "p2"}\n')
    assert load_rows(path) == [{"prompt": "p1"}, {"prompt": "p2"}]


def test_jsonl_row_numbers_are_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n')
    table = load_table(path)
    assert table.rows == [{"a": 1}, {"a": 2}]
    assert table.row_numbers == [1, 4]
    assert table.where(1) == f"{path}: row 4"


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = ['{"prompt": "p", "chosen": "c", "rejected": "r"}'] * 6 + ['{"prompt": "p", "chosen": }']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_rows(path)
    assert str(info.value) == f"{path}: line 7: invalid JSON (Expecting value at column 27)"


def test_bad_json_list_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('[\n  {"a": 1},\n  {"a": 2,}\n]\n')
    with pytest.raises(DataError, match=r"data\.json: line 3: invalid JSON \(Expecting property name"):
        load_rows(path)


def test_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"data\.jsonl: line 2: expected a JSON object, got list$"):
        load_rows(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(DataError) as info:
        load_rows(missing)
    assert str(info.value) == f"{missing}: no such file"


def test_missing_folder_is_named_without_asking_the_hub(tmp_path: Path) -> None:
    missing = tmp_path / "no_dataset_here"
    with pytest.raises(DataError) as info:
        load_rows(missing)
    assert str(info.value) == f"{missing}: no such file or folder"


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello\n")
    with pytest.raises(DataError, match=r"data\.txt: unsupported file type '\.txt'"):
        load_rows(path)


def test_csv_with_extra_cells(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("prompt,chosen,rejected\np,c,r\np,c,r,extra\n")
    with pytest.raises(DataError, match=r"data\.csv: row 2: more cells than header columns"):
        load_rows(path)


def test_local_dataset_folder_goes_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"prompt": "p1"}\n{"prompt": "p2"}\n')
    assert load_rows(folder) == [{"prompt": "p1"}, {"prompt": "p2"}]


def test_saved_dataset_dict_split_choice(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"prompt": "a"}]),
        "test": datasets.Dataset.from_list([{"prompt": "b"}, {"prompt": "c"}]),
    }).save_to_disk(str(folder))
    assert load_rows(folder) == [{"prompt": "a"}]
    assert load_rows(folder, split="test") == [{"prompt": "b"}, {"prompt": "c"}]
    with pytest.raises(DataError) as info:
        load_rows(folder, split="validation")
    assert str(info.value) == f"{folder}: no split 'validation'; available: train, test"


def test_several_splits_and_no_train_needs_a_choice(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "a": datasets.Dataset.from_list([{"prompt": "a"}]),
        "b": datasets.Dataset.from_list([{"prompt": "b"}]),
    }).save_to_disk(str(folder))
    with pytest.raises(DataError, match=r"saved: several splits \(a, b\); choose one"):
        load_rows(folder)
