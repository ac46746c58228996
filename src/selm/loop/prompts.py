"""The prompts of a run: the training prompts and each round's share of them, and the fixed held-out set."""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from typing import Any

from selm.data import load_preference_data, load_prompts, load_rows, tokenize_prompt
from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.loop.seeds import derived_seed
from selm.tasks.base import Task


@dataclass(frozen=True)
class RunPrompts:
    """Training and held-out prompts (strings or chat messages).

    Attributes:
        train: every training prompt of the run.
        eval: the held-out prompts, the same in every round.
        dataset_responses: with ``prompts.dataset_responses``, each training prompt's dataset
            [chosen, rejected]; else None.
        per_round: training prompts per round.
        schedule: ``"chunks"`` (disjoint contiguous chunks) or ``"resample"`` (a seeded draw per round).
        seed: the run's seed.
        demonstrations: with ``demonstrations.field``, each training prompt's demonstration (that
            column of ``prompts.train``); else None (the task's demonstrations, if any, are drawn).
    """

    train: list[Any]
    eval: list[Any]
    dataset_responses: list[list[Any]] | None
    per_round: int
    schedule: str
    seed: int
    demonstrations: list[Any] | None = None

    def indices(self, k: int) -> list[int]:
        """Indices (into ``train``) of round k's prompts: the k-th contiguous chunk, or a seeded draw."""
        if self.schedule == "chunks":
            return list(range((k - 1) * self.per_round, k * self.per_round))
        rng = random.Random(derived_seed(self.seed, k, "prompts"))
        return rng.sample(range(len(self.train)), min(self.per_round, len(self.train)))

    def extra_indices(self, k: int, draw: int, count: int) -> list[int]:
        """``count`` more prompt indices for round k's ``draw``-th extra draw (DAPO's dynamic
        sampling): a seeded draw from every training prompt, without repeats within the draw."""
        rng = random.Random(derived_seed(self.seed, k, f"prompts-extra-{draw}"))
        return rng.sample(range(len(self.train)), min(count, len(self.train)))

    def demonstration(self, index: int, task: Task | None) -> Any:
        """The demonstration of training prompt ``index`` (AIHF): its dataset column, else the
        task's demonstration drawn with a generator seeded by (seed, index), the same on resume."""
        if self.demonstrations is not None:
            return self.demonstrations[index]
        return task.demonstration(self.train[index], random.Random(f"{self.seed}/demonstration/{index}"))

    def for_round(self, k: int) -> list[Any]:
        """Round k's training prompts."""
        return [self.train[i] for i in self.indices(k)]


def load_run_prompts(config: RunConfig, task: Task | None) -> RunPrompts:
    """The prompts ``config.prompts`` names, or the task's generated ones.

    Raises:
        ConfigError: too few training prompts for ``rounds × per_round`` chunks, or no held-out prompt.
    """
    c, p = config, config.prompts
    dataset_responses = None
    if p.dataset_responses:
        rows = load_preference_data(p.train)
        train = [row.prompt for row in rows]
        dataset_responses = [[row.chosen, row.rejected] for row in rows]
    elif p.train is not None:
        train = load_prompts(p.train, split=p.split, field=p.field)
    else:
        train = task.train_prompts(c.rounds * p.per_round if p.schedule == "chunks" else 4 * p.per_round, c.seed)
    evals = (load_prompts(p.eval, split=p.eval_split, field=p.eval_field or p.field)[: p.num_eval]
             if p.eval is not None else task.eval_prompts(p.num_eval))
    warn_about_repeats(train, evals)
    if p.schedule == "chunks" and len(train) < c.rounds * p.per_round:
        raise ConfigError(f"prompts.train: {len(train)} prompts, but {c.rounds} rounds × prompts.per_round "
                          f"{p.per_round} need {c.rounds * p.per_round} (or set prompts.schedule: resample)")
    if not evals:
        raise ConfigError("prompts.eval: no held-out prompts")
    demonstrations = None
    if c.demonstrations is not None and c.demonstrations.field is not None:
        demonstrations = _column(p.train, c.demonstrations.field)
    return RunPrompts(train, evals, dataset_responses, p.per_round, p.schedule, c.seed, demonstrations)


def warn_about_repeats(train: list[Any], evals: list[Any]) -> None:
    """Warn, with counts, about training prompts given more than once and held-out prompts that are
    also training prompts (the held-out reward then measures memorisation)."""
    def key(prompt: Any) -> str:
        return json.dumps(prompt, sort_keys=True)

    seen = [key(x) for x in train]
    repeated = len(seen) - len(set(seen))
    if repeated:
        warnings.warn(f"prompts.train: {repeated} of {len(seen)} prompts repeat an earlier one", stacklevel=2)
    shared = sum(key(x) in set(seen) for x in evals)
    if shared:
        warnings.warn(f"prompts.eval: {shared} of {len(evals)} held-out prompts are also training prompts", stacklevel=2)


def _column(source: str, field: str) -> list[Any]:
    """Column ``field`` of every row of ``source``, in source order (the prompts' order).

    Raises:
        ConfigError: ``"demonstrations.field: ..."`` naming the first row without a non-empty value.
    """
    rows = load_rows(source)
    for number, row in enumerate(rows, 1):
        if not row.get(field):
            raise ConfigError(f"demonstrations.field: row {number} of {source} has no '{field}' value")
    return [row[field] for row in rows]


def prompt_token_ids(tokenizer: Any, prompts: list[Any], budget: int) -> tuple[list[list[int]], int]:
    """Each prompt's token ids, cut to its last ``budget`` tokens (as `selm train` truncates prompts:
    the start goes), and how many prompts were cut."""
    ids = [tokenize_prompt(tokenizer, p) for p in prompts]
    return [x[-budget:] for x in ids], sum(len(x) > budget for x in ids)
