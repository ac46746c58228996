"""`selm bench`: plan the measurements, run each in its own process, print and save the results."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selm.bench.results import (
    TARGETS,
    compute_ratios,
    format_ratios,
    format_sampler_table,
    format_table,
)
from selm.bench.sampler import SamplerSpec
from selm.bench.systems import SystemSpec

TRL_MISSING = "trl is not installed (pip install -e '.[bench]')"


@dataclass(frozen=True)
class BenchPlan:
    """Every measurement of one `selm bench` run; ``ratio_shape`` is where the targets are read."""

    systems: list[SystemSpec]
    sampler: SamplerSpec | None
    ratio_shape: str


def padding_free_available() -> bool:
    """Whether this selm's trainer has the padding-free switch."""
    from selm.train.config import TrainingArguments

    return "padding_free" in TrainingArguments.model_fields


def trl_available() -> bool:
    """Whether TRL is importable (checked without importing it: that takes seconds)."""
    return importlib.util.find_spec("trl") is not None


def _shape_systems(shape: str, warmup: int, steps: int, threads: int) -> list[SystemSpec]:
    # selm with its defaults (padding-free) is the headline; padded selm is the padding-free baseline.
    variants = [("selm", False, True), ("selm", False, False), ("selm", True, True), ("trl", False, False),
                ("trl", True, False), ("naive", False, False), ("sft", False, False)]
    dpo = [SystemSpec(system, shape, lora=lora, padding_free=packed, warmup=warmup, steps=steps, threads=threads)
           for system, lora, packed in variants]
    # GRPO's update on fixed rollouts (generation excluded): selm with its defaults against TRL's GRPOTrainer.
    grpo = [SystemSpec(system, shape, padding_free=packed, warmup=warmup, steps=steps, threads=threads,
                       objective="grpo") for system, packed in (("selm", True), ("trl", False))]
    return dpo + grpo


def make_plan(quick: bool, shapes: list[str] | None = None, threads: int = 0,
              objectives: list[str] | None = None) -> BenchPlan:
    """The default measurements.

    Full: every system on the Gemma-3-270M shape (2 warm-up + 3 timed steps, 15–35 s a step; with one
    warm-up step the first timed step was still 1.6× the steady state) and on
    the small shape (2 + 5), the sampler on Gemma-3-270M. Quick (< 5 min on 2 CPU cores): every
    system on the small shape and the sampler on the small shape. Each shape has the DPO rows and
    the two GRPO rows (``selm+grpo+padding-free``, ``trl+grpo``). ``objectives`` (e.g. ``["grpo"]``)
    keeps only the rows of those objectives and drops the sampler; None: everything.
    """
    if shapes is None:
        shapes = ["small"] if quick else ["gemma3-270m", "small"]
    systems: list[SystemSpec] = []
    for shape in shapes:
        large = shape == "gemma3-270m"
        systems += _shape_systems(shape, warmup=2, steps=3 if large else 5, threads=threads)
    if objectives is not None:
        systems = [spec for spec in systems if spec.objective in objectives]
        return BenchPlan(systems, None, ratio_shape=shapes[0])
    sampler_shape = shapes[0]
    large = sampler_shape == "gemma3-270m"
    sampler = SamplerSpec(sampler_shape, prompts=8 if large else 16, max_new_tokens=32, batch_size=16,
                          repeats=1 if large else 3, threads=threads)
    return BenchPlan(systems, sampler, ratio_shape=shapes[0])


def _skip_reason(spec: SystemSpec) -> str | None:
    if spec.system == "trl" and not trl_available():
        return TRL_MISSING
    if spec.padding_free and not padding_free_available():
        return "this selm has no padding-free switch (TrainingArguments.padding_free)"
    return None


def run_plan(plan: BenchPlan, measure: Callable[[str, Any], dict[str, Any]],
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement of ``plan`` through ``measure(kind, spec)`` and assemble the report dict."""
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if any(spec.system == "trl" for spec in plan.systems) and not trl_available():
        log(f"  {TRL_MISSING}: its rows (trl, trl+lora, trl+grpo) are skipped")
    for spec in plan.systems:
        reason = _skip_reason(spec)
        if reason:
            result: dict[str, Any] = {"status": "skipped", "reason": reason}
        else:
            t0 = time.perf_counter()
            result = measure("train", spec)
            log(f"  {spec.shape:12s} {spec.label:20s} {result['status']:7s} "
                + (f"{result['median_step_seconds']:.3f} s/step" if result["status"] == "ok"
                   else result.get("error", "")) + f"  ({time.perf_counter() - t0:.0f} s)")
        rows.append({**result, "shape": spec.shape, "label": spec.label, "spec": asdict(spec)})
    sampler = None
    if plan.sampler is not None:
        t0 = time.perf_counter()
        sampler = measure("sampler", plan.sampler)
        log(f"  {plan.sampler.shape:12s} sampler              {sampler['status']}  ({time.perf_counter() - t0:.0f} s)")
    ratios, notes = compute_ratios(rows, plan.ratio_shape, sampler)
    return {"ratios": ratios, "ratio_notes": notes, "targets": TARGETS, "ratio_shape": plan.ratio_shape,
            "rows": rows, "sampler": sampler, "wall_seconds": time.perf_counter() - start}


def machine_info() -> dict[str, Any]:
    """Where the numbers were taken: CPU, cores, threads, library versions, load average."""
    import torch
    import transformers

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    if trl_available():
        from importlib.metadata import version

        versions["trl"] = version("trl")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "versions": versions, "load_average_at_start": list(os.getloadavg())}


def run_bench(quick: bool = False, json_path: str | Path | None = None, shapes: list[str] | None = None,
              threads: int = 0, log: Callable[[str], None] = print, objectives: list[str] | None = None,
              command: str | None = None) -> dict[str, Any]:
    """Plan, measure (one child process per measurement), print the tables and write the JSON.

    ``objectives`` restricts the rows (see ``make_plan``); ``command`` is what the JSON records as
    the command (default: ``selm`` and this process's arguments).
    """
    from selm.bench.worker import run_isolated

    plan = make_plan(quick, shapes, threads, objectives)
    info = machine_info()
    log(f"selm bench{' --quick' if quick else ''}: {len(plan.systems)} training measurements"
        f"{' + sampling' if plan.sampler else ''}, one process each "
        f"(load average {info['load_average_at_start'][0]:.2f})")
    report = run_plan(plan, run_isolated, log)
    report = {"ratios": report.pop("ratios"), **report, "command": command or " ".join(["selm", *sys.argv[1:]]),
              "date": _dt.date.today().isoformat(), "quick": quick, "threads_per_measurement": threads or None,
              "objectives": objectives, "machine": {**info, "load_average_at_end": list(os.getloadavg())}}
    log("\n" + format_table(report["rows"]))
    if report["sampler"] and report["sampler"].get("status") == "ok":
        log("\n" + format_sampler_table(report["sampler"]))
    log(f"\nratios on {plan.ratio_shape}:\n" + format_ratios(report["ratios"], report["ratio_notes"]))
    log(f"\nwall time {report['wall_seconds']:.0f} s")
    if json_path is not None:
        from selm.io import atomic_write_text

        atomic_write_text(Path(json_path), json.dumps(report, indent=2) + "\n")
        log(f"results written to {json_path}")
    return report
