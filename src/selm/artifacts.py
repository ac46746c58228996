"""The rows of a round's JSONL artifacts, typed: what the loop writes and what the loop and the report read.

    samples.jsonl    SampleRow   one prompt, its candidates (Candidate) and its exploration response
    scores.jsonl     ScoreRow    the judge's rank score of every candidate of one prompt
    pairs.jsonl      PairRow     one training pair, its token ids and per-pair values
    rollouts.jsonl   RolloutRow  one sampled response with its reward (the RL objectives' example)
    eval.jsonl       EvalRow     one held-out sample with its rewards and log-probs
    best_of_n.jsonl  BestOfNRow  the eval judge's favourite of N samples of one held-out prompt
    linear_alignment.jsonl  BestOfNRow  (n = 1) the linear-alignment response to one held-out prompt

A row's fields are its JSON keys, in the order they are written, so ``to_json`` gives the same
bytes as the hand-built dicts it replaces. Keys a row type does not know are ignored on reading
(a newer selm's extra keys); a missing key raises KeyError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from selm.io import read_jsonl, write_jsonl

Prompt = Any  # a prompt string, or a list of chat messages
R = TypeVar("R", bound="FlatRow")
J = TypeVar("J", bound="JsonRow")


class JsonRow(Protocol):
    """What every row type below has: one JSON object per row, both ways."""

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls: type[J], row: Mapping[str, Any]) -> J: ...


class FlatRow:
    """``to_json`` / ``from_json`` by field name for rows whose values are plain JSON values."""

    # Fields left out of the JSON while they are None (keys that older rows never had).
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        """The row as one JSON object, keys in field order."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None or f.name not in self.OMIT_IF_NONE:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls: type[R], row: Mapping[str, Any]) -> R:
        """The row of one parsed JSON object."""
        return cls(**{f.name: row.get(f.name) if f.name in cls.OMIT_IF_NONE else row[f.name]
                      for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Candidate(FlatRow):
    """One response to a training prompt: sampled from the policy, or (``source="dataset"``) the prompt's
    dataset response, or (``source="demonstration"``) its demonstration (AIHF); those have no sampler log-prob.

    Attributes:
        text: the response text.
        token_ids: its token ids (what the trainer scores).
        logprob: Σ log π(token | prefix) under the sampling policy at temperature 1, nats; None for
            a dataset response or a demonstration.
        num_tokens: ``len(token_ids)``.
        finished: EOS or a stop token ended it.
        source: ``"dataset"`` for a dataset response, ``"demonstration"`` for a demonstration; None
            (and no key) for a sample.
        token_logprobs: log π(token | prefix) per token under the sampling policy, nats; kept
            (rollout objectives) when the sampler ran the trainer's weights, else None (no key).
    """

    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"source", "token_logprobs"})

    text: str
    token_ids: list[int]
    logprob: float | None
    num_tokens: int
    finished: bool
    source: str | None = None
    token_logprobs: list[float] | None = None

    @property
    def sampled(self) -> bool:
        """True for a policy sample, False for a dataset response or a demonstration."""
        return self.source is None


@dataclass(frozen=True)
class SampleRow:
    """One training prompt of the round with its candidates (samples.jsonl)."""

    prompt_index: int  # position among the round's prompts
    prompt: Prompt
    prompt_ids: list[int]
    candidates: list[Candidate]
    explore: Candidate | None  # the exploration response y0 (SELM's greedy answer, XPO's extra sample)
    # The fingerprint of the weights its samples came from (selm.modeling.loading.model_fingerprint);
    # None in runs made before samples were stamped.
    weights: str | None = None

    def to_json(self) -> dict[str, Any]:
        row = {"prompt_index": self.prompt_index, "prompt": self.prompt, "prompt_ids": self.prompt_ids,
               "candidates": [c.to_json() for c in self.candidates],
               "explore": self.explore.to_json() if self.explore is not None else None}
        return {**row, "weights": self.weights} if self.weights is not None else row

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> SampleRow:
        return cls(row["prompt_index"], row["prompt"], row["prompt_ids"],
                   [Candidate.from_json(c) for c in row["candidates"]],
                   Candidate.from_json(row["explore"]) if row["explore"] is not None else None, row.get("weights"))


@dataclass(frozen=True)
class ScoreRow(FlatRow):
    """The judge's rank score of each candidate of one prompt, in candidate order (scores.jsonl); a
    ``vector`` judge's reward vector of each candidate too (``vectors``, [candidates][K])."""

    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"vectors"})

    prompt_index: int
    scores: list[float]
    vectors: list[list[float]] | None = None


@dataclass(frozen=True)
class PairRow:
    """One training pair (pairs.jsonl): texts and token ids of chosen, rejected and the exploration
    response, the judge's scores, and the per-pair values the objective reads (``values``: e.g.
    ``chosen_advantages``, ``label_probs``, ``routes``, ``online_ids``), written after the fixed keys."""

    prompt_index: int
    prompt: Prompt
    prompt_ids: list[int]
    chosen: str
    rejected: str
    chosen_ids: list[int]
    rejected_ids: list[int]
    explore: str | None
    explore_ids: list[int] | None
    chosen_score: float
    rejected_score: float
    margin: float
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "values"}
        out.update(self.values)
        return out

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> PairRow:
        names = [f.name for f in fields(cls) if f.name != "values"]
        return cls(**{name: row[name] for name in names},
                   values={key: value for key, value in row.items() if key not in names})


@dataclass(frozen=True)
class RolloutRow(FlatRow):
    """One sampled response as an RL training example (rollouts.jsonl): its prompt's index (the
    group), the candidate's place, token ids, the judge's reward (after any shaping), the
    sampling policy's per-token log-probs when they were recorded, a ``vector`` judge's
    reward vector [K] (multi-objective methods), and the judge's score of every prefix y_<t,
    t = 0..len(token_ids)−1, as a complete response (GFlowNet fine-tuning; reward units)."""

    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"token_logprobs", "reward_vector", "prefix_rewards"})

    prompt_index: int
    candidate_index: int
    prompt_ids: list[int]
    token_ids: list[int]
    reward: float
    token_logprobs: list[float] | None = None
    reward_vector: list[float] | None = None
    prefix_rewards: list[float] | None = None


@dataclass(frozen=True)
class EvalRow(FlatRow):
    """One sample of the round's policy on a held-out prompt (eval.jsonl).

    Attributes:
        reward: the eval judge's reward; None for a pairwise judge (no pointwise score).
        gold_reward: the task's gold reward; None without a built-in task.
        logprob: log π_k(response | prompt), summed, nats (the sampler's).
        initial_logprob: log π0(response | prompt), summed, nats.
        win_vs_initial / win_vs_previous: a pairwise judge's P(this response beats round 0's /
            the previous round's response of the same prompt and sample index); None (no key)
            for a pointwise judge and in round 0.
    """

    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"win_vs_initial", "win_vs_previous"})

    prompt_index: int
    sample_index: int
    prompt: Prompt
    response: str
    num_tokens: int
    finished: bool
    reward: float | None
    gold_reward: float | None
    logprob: float
    initial_logprob: float
    token_ids: list[int]
    win_vs_initial: float | None = None
    win_vs_previous: float | None = None


@dataclass(frozen=True)
class BestOfNRow(FlatRow):
    """The best-of-N baseline on one held-out prompt (best_of_n.jsonl): the eval judge's pick of N
    samples, its judge reward (None for a pairwise judge, whose rank score is no reward) and gold reward.
    A baseline with one response per prompt (linear_alignment.jsonl) has n = 1."""

    prompt_index: int
    response: str
    num_tokens: int
    n: int
    reward: float | None
    gold_reward: float | None


def write_rows(path: Path, rows: Iterable[JsonRow]) -> None:
    """Atomically write typed rows as JSONL, one object per line."""
    write_jsonl(path, (row.to_json() for row in rows))


def read_rows(path: Path, row_type: type[J]) -> list[J]:
    """The rows of a JSONL artifact, as ``row_type`` (one of the row types above)."""
    return [row_type.from_json(row) for row in read_jsonl(path)]
