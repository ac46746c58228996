"""Holding out evaluation rows: a separate dataset, or a seeded fraction of the training data."""

from __future__ import annotations

import random

from selm.data.preference import load_preference_data
from selm.errors import DataError


def split_eval(pairs: list, ratio: float, seed: int) -> tuple[list, list]:
    """Deterministic (train, eval) split holding out ``ratio`` of the pairs."""
    if ratio <= 0:
        return pairs, []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(ratio * len(pairs))))
    if n_eval >= len(pairs):
        raise DataError(f"eval_split_ratio: holding out {ratio} of {len(pairs)} row(s) takes every row (at least one is "
                        f"held out), leaving none to train on; lower it to 0 or give more rows")
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def load_train_and_eval_rows(dataset: str, dataset_split: str, eval_dataset: str | None, eval_dataset_split: str,
                             eval_split_ratio: float, seed: int) -> tuple[list, list]:
    """The training rows and the held-out rows: ``eval_dataset`` when set, else a seeded
    ``eval_split_ratio`` of ``dataset`` (the keys of a recipe's model-and-data section)."""
    rows = list(load_preference_data(dataset, split=dataset_split))
    if eval_dataset is not None:
        return rows, list(load_preference_data(eval_dataset, split=eval_dataset_split))
    return split_eval(rows, eval_split_ratio, seed)
