"""Preference pairs to token ids, truncated to the training length."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from selm.data.preference import PreferencePair
from selm.data.tokenize import encode_prompt, encode_response
from selm.data.truncation import TruncationStats, keep_prompt_end, prompt_budget
from selm.errors import ConfigError, DataError
from selm.objectives.fields import PREFERENCE_FIELDS, Source


@dataclass
class TokenizedPair:
    """One preference pair as token ids (python ints); each sequence is prompt_ids + response ids.

    Attributes:
        index: the source row number (1-based), or the pair's position for pairs built in memory.
        prompt_ids: [P] prompt tokens (BOS included where the tokenizer uses one).
        chosen_ids: [C] chosen response tokens (ending with EOS unless truncated).
        rejected_ids: [R] rejected response tokens.
        explore_ids: [E] exploration response tokens, or None.
        online_ids: k online samples of the prompt ([O_j] tokens each), or None (HyPO's KL term).
        extras: per-pair numbers an objective reads, keyed by PreferenceBatch field name
            (``routes``, ``label_probs``, ``chosen_advantages``, ``rejected_advantages``, or a field
            an objective registered): written by the round loop, or a dataset column of that name.
    """

    index: int
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    explore_ids: list[int] | None = None
    online_ids: list[list[int]] | None = None
    extras: dict[str, float] = field(default_factory=dict)


def tokenize_preference_pairs(
    pairs: Iterable[PreferencePair],
    tokenizer: Any,
    max_length: int,
    max_prompt_length: int | None = None,
) -> tuple[list[TokenizedPair], TruncationStats]:
    """Tokenize pairs (see :mod:`selm.data.tokenize`) and fit each into ``max_length`` tokens.

    Args:
        pairs: validated pairs, e.g. from :func:`selm.data.load_preference_data`.
        tokenizer: a transformers tokenizer (with a chat template for conversational pairs).
        max_length: the longest prompt + response, in tokens.
        max_prompt_length: the longest prompt after left-truncation; None: cut the prompt only to
            leave room for the responses (see :mod:`selm.data.truncation`).

    Returns:
        (the pairs kept, in input order; counts of truncated and dropped rows).

    Raises:
        ConfigError: a length below its minimum.
        DataError: ``"row <n>: ..."`` when a row cannot be tokenized (no chat template, a template
            that renders the prompt inconsistently), or when truncation dropped every row.
    """
    if max_length < 2:
        raise ConfigError(f"max_length: {max_length} leaves no room for a prompt and a response (minimum 2)")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise ConfigError(f"max_prompt_length: {max_prompt_length} must be at least 1")
    stats = TruncationStats()
    out: list[TokenizedPair] = []
    for pair in pairs:
        stats.rows += 1
        responses = [pair.chosen, pair.rejected] + ([pair.explore] if pair.explore is not None else [])
        try:
            prompt = encode_prompt(tokenizer, pair.prompt)
            encoded = [encode_response(tokenizer, prompt, response) for response in responses]
        except DataError as exc:
            raise DataError(f"row {pair.index}: {exc}") from None
        stats.boundary_fallbacks += sum(e.boundary_fallback for e in encoded)

        longest = max(len(e.ids) for e in encoded)
        prompt_ids = keep_prompt_end(
            prompt.ids, prompt_budget(len(prompt.ids), longest, max_length, max_prompt_length),
            tokenizer.bos_token_id)
        room = max_length - len(prompt_ids)
        if room <= 0:
            stats.dropped_no_room += 1
            continue
        cut = [e.ids[:room] for e in encoded]
        if cut[0] == cut[1]:
            stats.dropped_identical += 1
            continue
        stats.truncated_prompts += len(prompt_ids) < len(prompt.ids)
        stats.truncated_responses += sum(len(e.ids) > room for e in encoded)
        stats.kept += 1
        out.append(TokenizedPair(pair.index, prompt_ids, cut[0], cut[1], cut[2] if len(cut) > 2 else None,
                                 extras=_pair_values(pair)))
    if stats.rows and not out:
        raise DataError(f"truncation to max_length {max_length} dropped all {stats.rows} rows: {stats.summary()}")
    return out, stats


def _pair_values(pair: PreferencePair) -> dict[str, float]:
    """The row's columns named like a per-pair value field of ``PREFERENCE_FIELDS`` (an objective's
    own included), as floats.

    Raises:
        DataError: ``"row <n>: field '<name>' ..."`` when such a column holds no finite number.
    """
    values = {}
    for name in sorted(PREFERENCE_FIELDS.names_where(source=Source.PAIR_VALUE) & pair.extra.keys()):
        value = pair.extra[name]
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise DataError(f"row {pair.index}: field '{name}' must be a finite number, got {value!r}")
        values[name] = float(value)
    return values
