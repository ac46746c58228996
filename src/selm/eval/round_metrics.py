"""One round's row of metrics.jsonl, from its artifacts and manifest (never from memory, so a resumed
run writes the same row as an uninterrupted one)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from selm.artifacts import BestOfNRow, EvalRow, read_rows
from selm.eval import keys
from selm.eval.metrics import distinct_n, kl_estimate, mean_std, win_rate
from selm.rundir import RunDir

# (manifest phase, key in the metric names): the phases whose time and throughput are reported.
TIMED_PHASES = (("sample", "sample"), ("judge", "judge"), ("train", "train"), ("evaluate", "eval"))


def round_metrics(k: int, rows: Sequence[EvalRow], manifest: Mapping[str, Any], *,
                  initial: Sequence[EvalRow] = (), previous: Sequence[EvalRow] = (),
                  best_of_n: Sequence[BestOfNRow] = (), linear_alignment: Sequence[BestOfNRow] = ()) -> dict[str, Any]:
    """The metrics row of round k.

    Args:
        k: the round (0: the starting policy).
        rows: the round's eval rows (at least one).
        manifest: the round's manifest (``phases`` with their stats, seconds and tokens;
            ``peak_memory_gb``).
        initial / previous: eval rows of round 0 / round k − 1, row for row with ``rows``; used
            for the win rates of a pointwise judge in rounds k ≥ 1.
        best_of_n: the round's best-of-N rows; empty when the baseline is off.
        linear_alignment: the round's linear-alignment rows; empty when the baseline is off.

    Returns:
        ``{round, reward_mean, ..., distinct_2}``, then the round's pairing, sampling-drift and
        training metrics from the manifest, timings, peak memory, the best-of-N and the
        linear-alignment baselines, in this order (the order of metrics.jsonl's keys).
    """
    rewards = [r.reward for r in rows if r.reward is not None]
    m: dict[str, Any] = {keys.ROUND: k}
    m[keys.REWARD_MEAN], m[keys.REWARD_STD] = mean_std(rewards) if rewards else (None, None)
    if rows and rows[0].gold_reward is not None:
        m[keys.GOLD_REWARD_MEAN], m[keys.GOLD_REWARD_STD] = mean_std([r.gold_reward for r in rows])
    m[keys.KL] = kl_estimate([r.logprob for r in rows], [r.initial_logprob for r in rows])
    if k == 0:
        m[keys.WIN_RATE_VS_INITIAL] = m[keys.WIN_RATE_VS_PREVIOUS] = None
    elif rows[0].win_vs_initial is not None:  # a pairwise judge compared the responses itself
        m[keys.WIN_RATE_VS_INITIAL] = mean_std([r.win_vs_initial for r in rows])[0]
        m[keys.WIN_RATE_VS_PREVIOUS] = mean_std([r.win_vs_previous for r in rows])[0]
    else:
        m[keys.WIN_RATE_VS_INITIAL] = win_rate(rewards, [r.reward for r in initial])
        m[keys.WIN_RATE_VS_PREVIOUS] = win_rate(rewards, [r.reward for r in previous])
    m[keys.LENGTH_MEAN] = mean_std([r.num_tokens for r in rows])[0]
    m[keys.EOS_RATE] = sum(r.finished for r in rows) / max(len(rows), 1)
    m[keys.DISTINCT_2] = distinct_n([r.token_ids for r in rows], 2)
    phases = manifest["phases"]
    if k > 0:
        m.update(phases["judge"].get("stats", {}))
        m.update((phases.get("pair") or phases["rollout"]).get("stats", {}))
        m.update(phases["sample"].get("drift", {}))
        m.update(phases["sample"].get("stats", {}))
        m.update(phases["train"].get("train", {}))
    m.update(phases.get("evaluate", {}).get("reliability", {}))
    m.update(phases.get("evaluate", {}).get("refusal", {}))
    m.update(phases.get("evaluate", {}).get("extrapolation", {}))
    for phase, name in TIMED_PHASES:
        if phase in phases:
            seconds = phases[phase].get("seconds", math.nan)
            m[keys.time_key(name)] = seconds
            if "tokens" in phases[phase] and seconds:
                m[keys.tokens_per_s_key(name)] = phases[phase]["tokens"] / seconds
    m[keys.PEAK_MEMORY_GB] = manifest.get("peak_memory_gb")
    if best_of_n:
        m[keys.BEST_OF_N] = best_of_n[0].n
    for baseline, reward_key, gold_key in ((best_of_n, keys.BEST_OF_N_REWARD, keys.BEST_OF_N_GOLD_REWARD),
                                           (linear_alignment, keys.LINEAR_ALIGNMENT_REWARD,
                                            keys.LINEAR_ALIGNMENT_GOLD_REWARD)):
        if baseline:
            for key, values in ((reward_key, [r.reward for r in baseline]),
                                (gold_key, [r.gold_reward for r in baseline])):
                present = [v for v in values if v is not None]
                m[key] = mean_std(present)[0] if present else None
    return m


def read_round_metrics(run_dir: RunDir, k: int) -> dict[str, Any]:
    """:func:`round_metrics` of round k of ``run_dir``, read from its eval.jsonl, best_of_n.jsonl,
    linear_alignment.jsonl and manifest (and, for k ≥ 1, round 0's and round k − 1's eval.jsonl)."""
    rd = run_dir.round(k)
    baselines = {name: read_rows(rd.file(f"{name}.jsonl"), BestOfNRow) if rd.file(f"{name}.jsonl").is_file() else []
                 for name in ("best_of_n", "linear_alignment")}
    earlier = {}
    if k > 0:
        earlier = {"initial": read_rows(run_dir.round(0).file("eval.jsonl"), EvalRow),
                   "previous": read_rows(run_dir.round(k - 1).file("eval.jsonl"), EvalRow)}
    return round_metrics(k, read_rows(rd.file("eval.jsonl"), EvalRow), rd.manifest,
                         **baselines, **earlier)
