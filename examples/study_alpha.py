"""The α ablation: does SELM's optimism term (or XPO's exploration bonus) change the outcome, and when?

``python examples/study_exploration.py alpha [options]`` runs it (this module is that subcommand).
SELM with α ∈ {0, 1e-4, 1e-3, 1e-2, 0.1, 1} and XPO with α·β at the same values (its bonus α·log π(ỹ)
has no β, so XPO α = SELM α · β gives the term the same gradient scale), at two β, on ``echo`` (the
copy earns partial credit; the mark is rare) and ``lock`` (the key is rare, far from the greedy copy,
and nothing earns partial credit toward it), with equal budgets and several seeds. α = 0 is DPO (both
objectives reduce to it), run once as the ``dpo`` row.

Per run and round it reads the held-out gold reward, the share of held-out samples with gold ≥ 0.8,
KL(π ‖ π0), the coverage (distinct high-reward answers among all training samples so far) and the
unseen-extrapolation metrics (``eval/unseen_mass_change``, ``eval/unseen_best_mass_change``; see
``selm.eval.extrapolation``), and writes mean ± 95 % t-intervals over seeds, paired differences from
DPO (same seed: same prompts and the same round-1 samples), and a reward-vs-KL plot per (task, β) into
the ``alpha`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from study_exploration import HIGH_REWARD, REPO, Budget, Job, error_bar, machine_description, run_job
from tqdm.auto import tqdm

SECTION = "alpha"
ALPHAS = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0)
BETAS = (0.1, 0.5)
TASKS = ("echo", "lock")
OBJECTIVES = ("selm", "xpo")
ALPHA_BUDGET = Budget(rounds=4, prompts_per_round=64, samples_per_prompt=8, eval_prompts=64, eval_samples_per_prompt=4)
ALPHA_QUICK = Budget(rounds=1, prompts_per_round=8, samples_per_prompt=2, eval_prompts=8, eval_samples_per_prompt=2)
SERIES = ("gold", "high", "kl", "coverage", "unseen", "unseen_best")


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: an objective at an α on SELM's scale (XPO's own α is α · β)."""

    objective: str
    alpha: float

    def label(self) -> str:
        return "dpo" if self.alpha == 0 else f"{self.objective} α={self.alpha:g}"

    def own_alpha(self, beta: float) -> float:
        """The objective's ``alpha`` key: SELM's α, or XPO's α · β (the same gradient scale)."""
        return self.alpha * beta if self.objective == "xpo" else self.alpha

    def folder(self, beta: float) -> str:
        return "dpo" if self.alpha == 0 else f"{self.objective}-a{self.own_alpha(beta):g}"


def variants(alphas: Sequence[float], objectives: Sequence[str], xpo_alphas: Sequence[float] | None = None
             ) -> list[Variant]:
    """DPO once (α = 0), then every objective at every α > 0 (XPO at ``xpo_alphas`` when given)."""
    rows = [Variant("selm", 0.0)] if 0.0 in alphas else []
    return rows + [Variant(o, a) for o in objectives for a in (xpo_alphas if o == "xpo" and xpo_alphas else alphas)
                   if a > 0]


def make_alpha_jobs(tasks: Sequence[str], betas: Sequence[float], rows: Sequence[Variant], seeds: int,
                    budget: Budget, output: Path) -> list[tuple[float, Variant, Job]]:
    """The grid, seed-major: (β, variant, job) per run."""
    jobs = []
    for seed in range(seeds):
        for task in tasks:
            for beta in betas:
                for v in rows:
                    overrides = (f"task={task}", f"model_name_or_path=builtin:{task}", f"judge.task={task}",
                                 f"seed={seed}", f"name=alpha-{task}-{v.folder(beta)}", f"objective.beta={beta:g}",
                                 f"objective.alpha={v.own_alpha(beta):g}", "eval.unseen_mass=true",
                                 *budget.overrides())
                    run_dir = output / task / f"beta{beta:g}" / v.folder(beta) / f"seed{seed}"
                    jobs.append((beta, v, Job(task, v.objective, seed, budget.rounds, str(run_dir), overrides)))
    return jobs


def alpha_series(run_dir: str | Path) -> dict[str, list[float]]:
    """Per-round series of one finished run (index = round, 0 = π0): ``gold``, ``high`` (share of held-out
    samples with gold ≥ HIGH_REWARD), ``kl``, ``coverage`` (distinct (prompt, answer) with gold ≥ HIGH_REWARD
    among the training samples of rounds 1..k; 0 at round 0), and ``unseen`` / ``unseen_best`` (the
    round's change of the mass on unseen / unseen ideal responses; 0 at round 0)."""
    from selm.artifacts import SampleRow, ScoreRow, read_rows
    from selm.eval import keys
    from selm.io import read_jsonl
    from selm.rundir import RunDir

    run = RunDir(Path(run_dir))
    rows = read_jsonl(run.metrics_path)
    out: dict[str, list[float]] = {name: [] for name in SERIES}
    found: set[tuple[str, str]] = set()
    for row in rows:
        k = row["round"]
        rd = run.round(k)
        evals = read_jsonl(rd.file("eval.jsonl"))
        out["gold"].append(row["gold_reward_mean"])
        out["kl"].append(row["kl"])
        out["high"].append(sum(e["gold_reward"] >= HIGH_REWARD for e in evals) / len(evals))
        if k > 0:  # the gold judge's scores are the gold rewards
            for s, sc in zip(read_rows(rd.file("samples.jsonl"), SampleRow), read_rows(rd.file("scores.jsonl"), ScoreRow)):
                found.update((s.prompt, " ".join(c.text.split())) for c, x in zip(s.candidates, sc.scores)
                             if c.source is None and x >= HIGH_REWARD)
        out["coverage"].append(float(len(found)))
        out["unseen"].append(row.get(keys.UNSEEN_MASS_CHANGE, 0.0) if k else 0.0)
        out["unseen_best"].append(row.get(keys.UNSEEN_BEST_MASS_CHANGE, 0.0) if k else 0.0)
    return out


def summarize(series: dict[tuple[str, float, str], list[dict[str, list[float]]]]) -> dict[tuple[str, float, str], dict[str, Any]]:
    """Per (task, β, variant label): per series and round the MeanInterval over seeds; ``unseen_total``
    and ``unseen_best_total`` (sums over rounds); and ``vs_dpo``: the paired (same seed) difference from
    the DPO row of the final round's gold, high share and coverage (absent for DPO itself)."""
    from selm.eval.intervals import mean_interval

    out: dict[tuple[str, float, str], dict[str, Any]] = {}
    for key, runs in series.items():
        cell: dict[str, Any] = {name: [mean_interval([r[name][k] for r in runs]) for k in range(len(runs[0][name]))]
                                for name in SERIES}
        for name in ("unseen", "unseen_best"):
            cell[f"{name}_total"] = mean_interval([sum(r[name]) for r in runs])
        dpo = series.get((key[0], key[1], "dpo"))
        if dpo is not None and key[2] != "dpo":
            cell["vs_dpo"] = {name: mean_interval([r[name][-1] - d[name][-1] for r, d in zip(runs, dpo)])
                              for name in ("gold", "high", "coverage", "kl")}
        out[key] = cell
    return out


def plot_frontiers(stats: dict[tuple[str, float, str], dict[str, Any]], tasks: Sequence[str], betas: Sequence[float],
                   labels: Sequence[str], path: Path) -> None:
    """One panel per (task, β): held-out gold reward against KL(π ‖ π0) through each row's rounds
    (SELM solid, XPO dashed, DPO black; a darker colour is a larger α), 95 % intervals as error bars."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(betas), 4.0 * len(tasks)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tasks), len(betas), squeeze=False)
    others = [label for label in labels if label != "dpo"]
    shades = colormaps["viridis"]
    for row, task in enumerate(tasks):
        for col, beta in enumerate(betas):
            ax = axes[row][col]
            for label in labels:
                cell = stats[(task, beta, label)]
                x, y = [m.mean for m in cell["kl"]], [m.mean for m in cell["gold"]]
                rank = sorted({lb.split("=")[1] for lb in others}, key=float).index(label.split("=")[1]) if "=" in label else 0
                steps = max(1, len({lb.split("=")[1] for lb in others}) - 1)
                colour = "black" if label == "dpo" else shades(0.85 - 0.8 * rank / steps)
                ax.errorbar(x, y, xerr=[error_bar(m) for m in cell["kl"]], yerr=[error_bar(m) for m in cell["gold"]],
                            marker="o", markersize=3, capsize=2, color=colour, label=label,
                            linestyle="--" if label.startswith("xpo") else "-")
            ax.set_title(f"{task}, β = {beta:g}")
            ax.set_xlabel("KL(π ‖ π0), nats per response")
            ax.set_ylabel("held-out gold reward")
            ax.grid(alpha=0.35)
            ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def render(stats: dict[tuple[str, float, str], dict[str, Any]], tasks: Sequence[str], betas: Sequence[float],
           rows: Sequence[Variant], budget: Budget, seeds: int, info: dict[str, Any], plot_name: str) -> str:
    """The Markdown of the ``alpha`` section of docs/results.md."""
    b = budget
    out = ["## The α ablation", "",
           f"SELM at α ∈ {{{', '.join(f'{v.alpha:g}' for v in rows if v.objective == 'selm')}}} and XPO at α·β "
           f"(the same gradient scale; its rows are labelled by the SELM α they match), β ∈ {{{', '.join(f'{x:g}' for x in betas)}}}, "
           f"from recipes/selm.yaml and recipes/xpo.yaml (lr 1e-4, batch 8, best-vs-worst pairs, round-start "
           f"reference; y0 = SELM's greedy answer, XPO's extra sample). Equal budgets: {b.rounds} rounds × "
           f"{b.prompts_per_round} new prompts × {b.samples_per_prompt} samples; held-out evaluation on "
           f"{b.eval_prompts} prompts × {b.eval_samples_per_prompt} samples at temperature 1. {seeds} seeds. "
           f"Cells are mean ± 95 % t-interval over seeds; 'vs DPO' is the paired difference from the α = 0 row "
           f"(same seed: same prompts, same round-1 samples). High = gold ≥ {HIGH_REWARD}. Coverage = distinct "
           f"high-reward (prompt, answer) pairs among all training samples of the run. Δ unseen = the change of "
           f"the mass on responses in no pair of the round, on its training prompts, summed over rounds; Δ "
           f"unseen ideal = the part of it on the task's ideal answers (exact, `selm.eval.extrapolation`).", "",
           f"Command: `{info['command']}`  ",
           f"Wall time: {info['wall_s'] / 60:.1f} min ({info['runs_run']} runs in this invocation, "
           f"{info['runs_reused']} reused; 1 worker process × {info['threads']} torch thread)  ",
           f"Machine: {info['machine']}; load average at start {info['load']}  ",
           f"Date: {info['date']}", "", f"![gold reward vs KL per α]({plot_name})", ""]
    for task in tasks:
        for beta in betas:
            out += [f"### `{task}`, β = {beta:g}", "",
                    "| row | gold | vs DPO | high share | vs DPO | coverage | vs DPO | KL | Δ unseen | Δ unseen ideal |",
                    "|---|---|---|---|---|---|---|---|---|---|"]
            for v in rows:
                c = stats[(task, beta, v.label())]
                vs = c.get("vs_dpo")
                out.append(f"| {v.label()} | {c['gold'][-1].format(3)} | {vs['gold'].format(3) if vs else '–'} | "
                           f"{c['high'][-1].format(3)} | {vs['high'].format(3) if vs else '–'} | "
                           f"{c['coverage'][-1].format(1)} | {vs['coverage'].format(1) if vs else '–'} | "
                           f"{c['kl'][-1].format(2)} | {c['unseen_total'].format(4)} | "
                           f"{c['unseen_best_total'].format(4)} |")
            out += ["", "Δ unseen mass per round:", "",
                    "| row | " + " | ".join(f"round {k}" for k in range(1, b.rounds + 1)) + " |",
                    "|---|" + "---|" * b.rounds]
            for v in rows:
                c = stats[(task, beta, v.label())]
                out.append(f"| {v.label()} | " + " | ".join(m.format(4) for m in c["unseen"][1:]) + " |")
            out.append("")
    return "\n".join(out)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="study_exploration.py alpha", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1 (default 3)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=["echo", "lock", "sort"])
    parser.add_argument("--betas", nargs="+", type=float, default=list(BETAS))
    parser.add_argument("--alphas", nargs="+", type=float, default=list(ALPHAS), help="on SELM's scale")
    parser.add_argument("--xpo-alphas", nargs="+", type=float, help="XPO's α on SELM's scale (default: --alphas)")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--prompts-per-round", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--quick", action="store_true", help="smoke-test budget: 1 round, 8 prompts, 2 samples")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "study-alpha")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if min(args.seeds, args.threads, args.rounds or 1, args.prompts_per_round or 1) < 1:
        parser.error("--seeds, --threads, --rounds and --prompts-per-round must be >= 1")
    if args.samples is not None and args.samples < 2:
        parser.error("--samples must be >= 2 (a pair needs two responses)")
    if any(a < 0 for a in [*args.alphas, *(args.xpo_alphas or [])]) or any(b <= 0 for b in args.betas):
        parser.error("--alphas must be >= 0 and --betas > 0")
    return args


def main(argv: Sequence[str]) -> int:
    """Run the ablation's grid one run at a time (reusing finished runs), then write its section and plot."""
    import torch

    from selm.errors import UserError
    from selm.report.sections import replace_section
    from selm.tasks import get_task

    args = parse_args(argv)
    started = time.perf_counter()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    budget = replace(ALPHA_QUICK if args.quick else ALPHA_BUDGET, **{key: value for key, value in (
        ("rounds", args.rounds), ("prompts_per_round", args.prompts_per_round),
        ("samples_per_prompt", args.samples)) if value is not None})
    for task in args.tasks:
        get_task(task).starting_model()
    rows = variants(sorted(set(args.alphas)), args.objectives, sorted(set(args.xpo_alphas or args.alphas)))
    jobs = make_alpha_jobs(args.tasks, sorted(set(args.betas)), rows, args.seeds, budget, args.output)
    try:
        for _, _, job in jobs:
            job.check_reusable()
    except UserError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    os.environ.update(TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    torch.set_num_threads(args.threads)
    todo = [job for _, _, job in jobs if not job.finished]
    bar = tqdm(todo, desc="α ablation runs", unit="run")
    for job in bar:
        _, seconds, error = run_job(job)
        bar.set_postfix_str(f"{Path(job.run_dir).relative_to(args.output)} {seconds:.0f}s")
        if error is not None:
            print(f"{job.run_dir}: {error}\n(fix, then rerun the same command: finished runs are kept)")
            return 1
    series: dict[tuple[str, float, str], list[dict[str, list[float]]]] = {}
    for beta, v, job in jobs:
        series.setdefault((job.task, beta, v.label()), []).append(alpha_series(job.run_dir))
    stats = summarize(series)
    plot_name = "study_alpha_quick.png" if args.quick else "study_alpha.png"
    betas = sorted(set(args.betas))
    plot_frontiers(stats, args.tasks, betas, [v.label() for v in rows], args.docs / plot_name)
    info = {"command": " ".join(["python examples/study_exploration.py alpha", shlex.join(argv)]).strip(),
            "wall_s": time.perf_counter() - started, "runs_run": len(todo), "runs_reused": len(jobs) - len(todo),
            "threads": args.threads, "machine": machine_description(), "load": load,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    replace_section(args.docs / "results.md", SECTION, render(stats, args.tasks, betas, rows, budget, args.seeds, info,
                                                              plot_name))
    summary = {"budget": asdict(budget), "seeds": args.seeds, **info, "cells": {
        f"{task}/beta{beta:g}/{label}": {name: [[m.mean, m.half_width] for m in cell[name]] for name in SERIES}
        for (task, beta, label), cell in stats.items()}}
    (args.output / "alpha.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.docs / 'results.md'} and {args.docs / plot_name} in {info['wall_s'] / 60:.1f} min")
    return 0
