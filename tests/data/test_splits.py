"""Held-out rows: a seeded fraction of the training data, or a separate eval dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selm.data.splits import load_train_and_eval_rows, split_eval
from selm.errors import DataError


def test_split_eval_holds_out_the_rounded_fraction_deterministically() -> None:
    pairs = list(range(40))
    train, held = split_eval(pairs, 0.1, seed=3)
    assert len(held) == 4 and len(train) == 36
    assert sorted(train + held) == pairs and not set(train) & set(held)
    assert train == sorted(train) and held == sorted(held)  # the data's own order is kept
    assert split_eval(pairs, 0.1, seed=3) == (train, held)
    assert split_eval(pairs, 0.1, seed=4)[1] != held


def test_split_eval_edge_cases() -> None:
    assert split_eval([1, 2, 3], 0.0, seed=0) == ([1, 2, 3], [])
    # A tiny positive ratio still holds out one row.
    train, held = split_eval(list(range(10)), 0.01, seed=0)
    assert len(held) == 1 and len(train) == 9
    # One row and any positive ratio: the held-out row would be all of them. Said so, not "empty".
    with pytest.raises(DataError, match="eval_split_ratio: holding out 0.1 of 1 row.* takes every row"):
        split_eval(["only"], 0.1, seed=0)


def write_pairs(path: Path, n: int, tag: str) -> str:
    path.write_text("".join(json.dumps({"prompt": f"{tag} {i}", "chosen": "a", "rejected": "b"}) + "\n"
                            for i in range(n)))
    return str(path)


def test_load_train_and_eval_rows_from_a_split_or_a_second_dataset(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "train.jsonl", 20, "train")
    train, held = load_train_and_eval_rows(data, "train", None, "train", 0.25, seed=1)
    assert len(train) == 15 and len(held) == 5
    assert sorted(r.prompt for r in train + held) == sorted(f"train {i}" for i in range(20))

    evals = write_pairs(tmp_path / "eval.jsonl", 3, "eval")
    train, held = load_train_and_eval_rows(data, "train", evals, "train", 0.25, seed=1)
    assert len(train) == 20 and [r.prompt for r in held] == ["eval 0", "eval 1", "eval 2"]
