"""The round's pairs as trainer input, and the trainer's result as the round's training metrics."""

from __future__ import annotations

from typing import Any

import torch

from selm.artifacts import PairRow
from selm.data import TokenizedPair
from selm.eval import keys
from selm.objectives.fields import PREFERENCE_FIELDS, Source
from selm.train.diagnostics import GRAD_KEYS, logp_shift_metrics
from selm.train.trainer import TrainResult

# Keys of the step log that are not round metrics: a timing, and a running count reported on its own.
NOT_ROUND_METRICS = frozenset({keys.TOKENS_PER_S, keys.NONFINITE_STEPS})


def tokenized_pairs(rows: list[PairRow]) -> list[TokenizedPair]:
    """The trainer's pairs: the sampled token ids themselves (no re-tokenization, so the trainer scores
    exactly the tokens the sampler produced) and the per-pair values the objectives read (their own
    registered fields included, so the live table is read here)."""
    pair_values = PREFERENCE_FIELDS.names_where(source=Source.PAIR_VALUE)
    return [TokenizedPair(index=i, prompt_ids=r.prompt_ids, chosen_ids=r.chosen_ids, rejected_ids=r.rejected_ids,
                          explore_ids=r.explore_ids, online_ids=r.values.get("online_ids"),
                          extras={key: r.values[key] for key in pair_values if key in r.values})
            for i, r in enumerate(rows)]


def round_train_metrics(result: TrainResult, before: dict[str, torch.Tensor] | None = None,
                        after: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The round's training metrics: every logged step metric (the objective's own, ``sail/*``,
    ``lcpo/*``, ..., included) as ``train/<name>``, its mean over the round's logging steps; steps,
    reference time and skipped steps; the log-prob shifts of the pairs from ``before`` to ``after``
    (``{"chosen": [P], "rejected": [P]}``, nats; pairs only); and the gradient-entanglement rows of the step
    log (``train.diagnostics_steps``), averaged over the round."""
    metrics: dict[str, Any] = {keys.train_key(key): v for key, v in result.metrics.items()
                               if key not in NOT_ROUND_METRICS and not key.startswith(keys.TIMING_PREFIXES)}
    metrics[keys.TRAIN_STEPS] = result.global_step
    metrics[keys.REFERENCE_TIME] = result.reference_seconds
    metrics[keys.TRAIN_NONFINITE_STEPS] = result.nonfinite_steps
    if before is not None and after is not None:
        metrics.update(logp_shift_metrics(before, after))
    diag_rows = [h for h in result.log_history if GRAD_KEYS[0] in h]
    metrics.update({key: sum(h[key] for h in diag_rows) / len(diag_rows) for key in GRAD_KEYS if diag_rows})
    return metrics
