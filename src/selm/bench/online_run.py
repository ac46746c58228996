"""`selm bench --online`: selm's round loop against TRL's online trainers, the whole round timed.

Plans one measurement per (shape, objective, system), runs each in its own process, checks that
the two sides of a pair did the same work, and prints a table of the timed round (end to end and
by phase) with the ratio the target is stated in (selm's prompts/s over TRL's, ≥ 2).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selm.bench.online_systems import OBJECTIVES, PHASES, OnlineSpec
from selm.bench.results import GIB

TARGET = ">= 2"
# Per shape: the DPO workload (prompts, batch of pairs) and the GRPO one (prompts, group size, batch of
# rollouts), 2 updates a round each; tokens per prompt and per response; warm-up rounds.
WORKLOADS: dict[str, dict[str, Any]] = {
    "small": {"dpo": dict(prompts=8, batch_size=4), "grpo": dict(prompts=4, samples=4, batch_size=8),
              "tokens": 32, "warmup_rounds": 1},
    "gemma3-270m": {"dpo": dict(prompts=4, batch_size=2), "grpo": dict(prompts=2, samples=4, batch_size=4),
                    "tokens": 32, "warmup_rounds": 1},
    "tiny": {"dpo": dict(prompts=2, batch_size=2), "grpo": dict(prompts=1, samples=2, batch_size=2),
             "tokens": 4, "warmup_rounds": 0},
}


def make_online_plan(quick: bool, shapes: list[str] | None = None, threads: int = 0,
                     objectives: list[str] | None = None) -> list[OnlineSpec]:
    """selm then TRL for each objective of each shape (default: small with ``quick``, else Gemma-3-270M and small)."""
    if shapes is None:
        shapes = ["small"] if quick else ["gemma3-270m", "small"]
    plan = []
    for shape in shapes:
        w = WORKLOADS[shape]
        for objective in objectives or OBJECTIVES:
            for system in ("selm", "trl"):
                plan.append(OnlineSpec(system, objective, shape, max_new_tokens=w["tokens"], prompt_length=w["tokens"],
                                       warmup_rounds=w["warmup_rounds"], threads=threads, **w[objective]))
    return plan


def summarize(row: dict[str, Any], spec: OnlineSpec) -> dict[str, Any]:
    """A measured row plus its rates: prompts/s and (generated + trained) tokens/s of the timed round."""
    if row.get("status") != "ok":
        return row
    seconds = row["seconds"]
    lengths = row["sample_lengths"]
    return {**row, "prompts_per_second": spec.prompts / seconds,
            "tokens_per_second": (row["generated_tokens"] + row["trained_tokens"]) / seconds,
            "mean_sample_length": sum(lengths) / max(len(lengths), 1)}


WORK_KEYS = ("samples", "mean_sample_length", "generated_tokens", "updates", "sequences_per_update", "trained_tokens")


def same_work(selm: dict[str, Any], trl: dict[str, Any]) -> dict[str, Any]:
    """Whether the two rows of a pair did the same work: each of ``WORK_KEYS`` side by side, and ``equal``."""
    checks = {key: [selm[key], trl[key]] for key in WORK_KEYS}
    return {"checks": checks, "equal": all(a == b for a, b in checks.values())}


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One comparison per (shape, objective) with a selm and a TRL row: the work check and the speed ratio
    (selm's prompts/s over TRL's; null with the reason when a side failed or did other work)."""
    out = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for objective in OBJECTIVES:
            pair = {r["system"]: r for r in rows if r["shape"] == shape and r["objective"] == objective}
            if not pair:
                continue
            selm, trl = pair.get("selm", {}), pair.get("trl", {})
            entry: dict[str, Any] = {"shape": shape, "objective": objective, "target": TARGET, "ratio": None}
            if selm.get("status") != "ok" or trl.get("status") != "ok":
                bad = selm if selm.get("status") != "ok" else trl
                entry["reason"] = f"{bad.get('label', '?')}: {bad.get('reason') or bad.get('error') or 'not run'}"
            else:
                entry["work"] = same_work(selm, trl)
                if entry["work"]["equal"]:
                    entry["ratio"] = selm["prompts_per_second"] / trl["prompts_per_second"]
                else:
                    entry["reason"] = "the two sides did different work (see work)"
            out.append(entry)
    return out


def _seconds(value: float | None) -> str:
    return "(in update)" if value is None else f"{value:.2f}"


def format_online_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the timed rounds: end to end, the rates, the phases, the work, the memory."""
    lines = ["| shape | system | dtype | round s | prompts/s | tokens/s | sample s | judge s | ref/old log-probs s "
             "| update s | other s | samples x mean length | updates x sequences | peak RSS GiB |",
             "|" + "---|" * 14]
    for r in rows:
        if r.get("status") != "ok":
            why = r.get("reason") or r.get("error") or ""
            lines.append(f"| {r['shape']} | {r['label']} | {r.get('status')}: {why} |" + " |" * 11)
            continue
        phases = " | ".join(_seconds(r["phases"][p]) for p in PHASES)
        lines.append(f"| {r['shape']} | {r['label']} | {r['dtype']} | {r['seconds']:.2f} | {r['prompts_per_second']:.3f} "
                     f"| {r['tokens_per_second']:.1f} | {phases} | {r['samples']} x {r['mean_sample_length']:.1f} "
                     f"| {r['updates']} x {r['sequences_per_update']:g} | {r['peak_rss_bytes'] / GIB:.2f} |")
    return "\n".join(lines)


def format_other(rows: list[dict[str, Any]]) -> str:
    """One line per selm row: what its ``other`` seconds are made of (``notes.other``)."""
    lines = []
    for r in rows:
        parts = r.get("notes", {}).get("other") if r.get("status") == "ok" else None
        if isinstance(parts, dict):
            shown = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in parts.items())
            lines.append(f"{r['shape']} {r['label']} other {r['phases']['other']:.2f} s: {shown}")
    return "\n".join(lines)


def format_comparisons(comparisons: list[dict[str, Any]]) -> str:
    """One line per pair: the same-work check and selm's end-to-end speed over TRL's."""
    lines = []
    for c in comparisons:
        head = f"{c['shape']} {c['objective']}:"
        if "work" in c:
            checks = ", ".join(f"{k.replace('_', ' ')} {a:g} vs {b:g}" for k, (a, b) in c["work"]["checks"].items())
            head += f" same work {'yes' if c['work']['equal'] else 'NO'} (selm vs trl: {checks});"
        shown = f"{c['ratio']:.2f}x" if c["ratio"] is not None else f"n/a ({c.get('reason', '')})"
        lines.append(f"{head} selm / trl end to end {shown} (target {c['target']})")
    return "\n".join(lines)


def run_online_plan(plan: list[OnlineSpec], measure: Callable[[str, Any], dict[str, Any]],
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every spec through ``measure("online", spec)`` (TRL rows skipped without TRL) and compare."""
    from selm.bench.run import TRL_MISSING, trl_available

    rows = []
    if any(s.system == "trl" for s in plan) and not trl_available():
        log(f"  {TRL_MISSING}: its online rows are skipped")
    for spec in plan:
        if spec.system == "trl" and not trl_available():
            result: dict[str, Any] = {"status": "skipped", "reason": TRL_MISSING}
        else:
            t0 = time.perf_counter()
            result = summarize(measure("online", spec), spec)
            shown = f"{result['seconds']:.2f} s a round" if result["status"] == "ok" else result.get("error", "")
            log(f"  {spec.shape:12s} {spec.label:18s} {result['status']:7s} {shown}  ({time.perf_counter() - t0:.0f} s)")
        rows.append({**result, "shape": spec.shape, "label": spec.label, "system": spec.system,
                     "objective": spec.objective, "spec": asdict(spec)})
    return {"rows": rows, "comparisons": compare(rows)}


def run_online_bench(quick: bool = False, json_path: str | Path | None = None, shapes: list[str] | None = None,
                     threads: int = 0, log: Callable[[str], None] = print, objectives: list[str] | None = None,
                     command: str | None = None) -> dict[str, Any]:
    """Plan, measure (one child process per row), print the table and the checks, write the JSON."""
    from selm.bench.run import machine_info
    from selm.bench.worker import run_isolated

    plan = make_online_plan(quick, shapes, threads, objectives)
    info = machine_info()
    log(f"selm bench --online{' --quick' if quick else ''}: {len(plan)} online rounds, one process each "
        f"(load average {info['load_average_at_start'][0]:.2f})")
    start = time.perf_counter()
    report = run_online_plan(plan, run_isolated, log)
    report.update(wall_seconds=time.perf_counter() - start, command=command or " ".join(["selm", *sys.argv[1:]]),
                  date=_dt.date.today().isoformat(), quick=quick, threads_per_measurement=threads or None,
                  machine={**info, "load_average_at_end": list(os.getloadavg())})
    log("\n" + format_online_table(report["rows"]))
    log("\n" + format_other(report["rows"]))
    log("\n" + format_comparisons(report["comparisons"]))
    log(f"\nwall time {report['wall_seconds']:.0f} s")
    if json_path is not None:
        from selm.io import atomic_write_text

        atomic_write_text(Path(json_path), json.dumps(report, indent=2) + "\n")
        log(f"results written to {json_path}")
    return report

