"""The exploration study: eight online algorithms, equal sample budgets, several seeds, two built-in tasks.

Five pairwise algorithms (SELM, iterative DPO, XPO, online SimPO, SAIL-PR) and three RL ones (GRPO,
RLOO, PPO) run from their recipes in ``recipes/`` with the same sample budget on every task: rounds,
prompts per round and samples per prompt (``sampling.n``). The pairwise rows also share the batch
size and epochs (so the same number of training steps per pair); the RL rows keep their recipes'
own batch size and update epochs, since those are part of each RL method (PPO's and GRPO's two
update epochs over a round's rollouts). Every row reports, per round, the held-out gold reward, the
KL(π ‖ π0) estimate and the share of held-out samples at high gold reward (≥ 0.8), as mean ± 95 %
t-interval over seeds. The tasks:

- ``echo``: exploration is needed. A high reward needs a closing mark that the starting policy
  writes about once in a hundred samples (see ``selm.tasks.echo``).
- ``sort``: exploration matters less: partial credit pays every step toward the sorted order.

The budget keys and the task are the only overrides, except for SAIL-PR: its recipe mixes in
offline pairs from a sort preference file, which ``echo`` does not have (and whose chosen answers
would hand it the goal), so here every prompt takes SAIL's PR route (sail.pr=1: the first two
policy samples, labelled by the gold reward) on the task's own prompts. Of the RL recipes' own
settings the budget changes only the prompts per round (256 → 128, as for every recipe) and, for
PPO, the samples per prompt (4 → 8).

    python examples/study_exploration.py                  # the full study, then docs/results.md
    python examples/study_exploration.py --quick          # a smoke test (1 seed, 1 round, 8 prompts)
    python examples/study_exploration.py alpha            # the α ablation (examples/study_alpha.py)
    python examples/study_exploration.py alpha --quick    # its smoke test

Runs go to ``--output`` (default runs/study-exploration/<task>/<algorithm>/seed<k>); a finished
run is reused and a cut one resumed, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parent.parent
SECTION = "study"
HIGH_REWARD = 0.8  # "high gold reward": on echo only a marked answer reaches it (an exact copy alone is 0.4)
ALGORITHMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "selm": ("recipes/selm.yaml", ()),
    "iterative-dpo": ("recipes/iterative-dpo.yaml", ()),
    "xpo": ("recipes/xpo.yaml", ()),
    "online-simpo": ("recipes/online-simpo.yaml", ()),
    "sail-pr": ("recipes/sail-pr.yaml", ("prompts.train=null", "prompts.dataset_responses=false", "sail.pr=1.0")),
    "grpo": ("recipes/grpo.yaml", ()),
    "rloo": ("recipes/rloo.yaml", ()),
    "ppo": ("recipes/ppo.yaml", ()),
    # Not in the published study; run them by name (--algorithms spac aihf). Both recipes read the sort
    # preference file, which echo does not have: here SPAC's data pairs are the judge's best-vs-worst
    # pairs of the task's own prompts, and AIHF's demonstrations are the task's.
    "spac": ("recipes/spac.yaml", ("prompts.train=null", "prompts.dataset_responses=false",
                                   "pairs.strategy=best_worst")),
    "aihf": ("recipes/aihf.yaml", ("prompts.train=null", "demonstrations={}")),
    # FPO's autoencoder is trained on each task's starting model (cached per model).
    "fpo": ("recipes/fpo.yaml", ()),
    # Rollout-shaped like the RL rows (--algorithms fl-gfn): each of its samples' prefixes is judged too.
    "fl-gfn": ("recipes/fl-gfn.yaml", ()),
}
# The rows of the published study (docs/results.md): the default of --algorithms.
STUDY_ALGORITHMS = ("selm", "iterative-dpo", "xpo", "online-simpo", "sail-pr", "grpo", "rloo", "ppo")
# RL rows: every scored sample is a training example; they keep their recipes' batch size and epochs.
RL_ALGORITHMS = frozenset({"grpo", "rloo", "ppo", "fl-gfn"})
RL_NOTES = {  # what each RL recipe does, for the docs (its batch, epochs and lr are read from the recipe)
    "grpo": "group-standardised advantages, per-token PPO-clip, k3 KL to π0 in the loss with β 0.04",
    "rloo": "leave-one-out baseline, k1 KL to π0 in the reward with β 0.05, PPO-clip on the sequence ratio",
    "ppo": "value head, GAE with γ 1 and λ 0.95, k1 KL to π0 in the reward with β 0.05, clipped policy and "
           "value losses",
    "fl-gfn": "GFlowNet fine-tuning toward samples ∝ exp(gold/0.1), modified SubTB with λ 1 on every judged prefix, "
              "no reference",
}
TASKS = ("echo", "sort")


@dataclass(frozen=True)
class Budget:
    """What every algorithm gets on every task and seed."""

    rounds: int = 3
    prompts_per_round: int = 128
    samples_per_prompt: int = 8
    eval_prompts: int = 64
    eval_samples_per_prompt: int = 4
    batch_size: int = 8
    epochs: int = 1
    start_prompts: int = 500  # held-out prompts for the starting policy's rates (not a training budget)

    def overrides(self, rl: bool = False) -> list[str]:
        """The ``key=value`` overrides that impose this budget on a recipe.

        Every row gets the sample budget (rounds, prompts per round, samples per prompt) and the same
        evaluation; a pairwise row (``rl=False``) also gets the batch size and epochs, while an RL row
        keeps its recipe's (its update epochs and batch are part of the method).
        """
        samples = [f"rounds={self.rounds}", f"prompts.per_round={self.prompts_per_round}", "prompts.schedule=chunks",
                   f"prompts.num_eval={self.eval_prompts}", f"sampling.n={self.samples_per_prompt}",
                   f"eval.samples_per_prompt={self.eval_samples_per_prompt}"]
        if rl:
            return samples
        return [*samples, f"train.per_device_train_batch_size={self.batch_size}", f"train.num_train_epochs={self.epochs}"]


FULL = Budget()
QUICK = Budget(rounds=1, prompts_per_round=8, samples_per_prompt=2, eval_prompts=8, eval_samples_per_prompt=2,
               start_prompts=50)


@dataclass(frozen=True)
class Job:
    """One run of the grid."""

    task: str
    algorithm: str
    seed: int
    rounds: int
    run_dir: str
    overrides: tuple[str, ...]

    @property
    def recipe(self) -> str:
        return str(REPO / ALGORITHMS[self.algorithm][0])

    @property
    def finished(self) -> bool:
        """True when metrics.jsonl has a row for round 0 and for every round."""
        path = Path(self.run_dir) / "metrics.jsonl"
        return path.is_file() and len(path.read_text().splitlines()) == self.rounds + 1

    def train_settings(self) -> tuple[int, float, float]:
        """(batch size, epochs, learning rate) of this job's config, as ``selm run`` would load it."""
        from selm.config import load_config
        from selm.loop.config import RunConfig

        train = load_config(RunConfig, self.recipe, list(self.overrides)).train
        return train.per_device_train_batch_size, train.num_train_epochs, train.learning_rate

    def check_reusable(self) -> None:
        """A run already in ``run_dir`` must have been started with this job's config (else UserError)."""
        from selm.config import load_config
        from selm.errors import UserError
        from selm.loop.config import RunConfig

        path = Path(self.run_dir) / "config.yaml"
        if path.is_file() and load_config(RunConfig, path) != load_config(RunConfig, self.recipe, list(self.overrides)):
            raise UserError(f"{self.run_dir}: holds a run with another config (budget, seed or recipe); "
                            f"choose another --output")


def make_jobs(tasks: Sequence[str], algorithms: Sequence[str], seeds: int, budget: Budget, output: Path) -> list[Job]:
    """The grid, seed-major, so that partial progress covers every (task, algorithm) evenly."""
    jobs = []
    for seed in range(seeds):
        for task in tasks:
            for algorithm in algorithms:
                overrides = (*ALGORITHMS[algorithm][1], f"task={task}", f"model_name_or_path=builtin:{task}",
                             f"judge.task={task}", f"seed={seed}", f"name=study-{task}-{algorithm}",
                             *budget.overrides(rl=algorithm in RL_ALGORITHMS))
                run_dir = output / task / algorithm / f"seed{seed}"
                jobs.append(Job(task, algorithm, seed, budget.rounds, str(run_dir), overrides))
    return jobs


def _quiet_worker(threads: int) -> None:
    """Pool initializer: a fixed number of torch threads, no progress bars or library chatter."""
    os.environ.update(TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    import warnings

    import torch

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")


def run_job(job: Job) -> tuple[Job, float, str | None]:
    """Run one grid cell (resume it if it was cut); returns (job, seconds, error message or None)."""
    from selm.loop.run import resume_run, start_run

    start = time.perf_counter()
    try:
        if (Path(job.run_dir) / "config.yaml").is_file():
            resume_run(job.run_dir, progress=False)
        else:
            start_run(job.recipe, list(job.overrides), output=job.run_dir, progress=False)
    except Exception as exc:  # reported by the parent, with the run it belongs to
        return job, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return job, time.perf_counter() - start, None


def starting_policy_rates(task_name: str, num_prompts: int = 500, samples: int = 8, seed: int = 0) -> dict[str, float]:
    """How often the task's starting policy already answers well, on held-out prompts.

    Samples ``samples`` responses (temperature 1, as the loop does) to each of the first
    ``num_prompts`` held-out prompts. Returns the mean gold reward, the share of samples with gold
    reward ≥ ``HIGH_REWARD`` and = 1, and the share of prompts with at least one sample ≥ ``HIGH_REWARD``
    (what best-of-``samples`` pairing can pick as "chosen").
    """
    from selm.data import tokenize_prompt
    from selm.modeling.loading import load_causal_lm, load_tokenizer
    from selm.sampling import SamplingParams, build_sampler
    from selm.tasks import get_task

    task = get_task(task_name)
    path = str(task.starting_model())
    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path, dtype="float32").eval()
    prompts = task.eval_prompts(num_prompts)
    sampler = build_sampler("hf", model=model, tokenizer=tokenizer, batch_size=256, progress=False)
    outputs = sampler.generate([tokenize_prompt(tokenizer, p) for p in prompts], SamplingParams(
        n=samples, temperature=1.0, max_new_tokens=16, seed=seed, stop_token_ids=(tokenizer.eos_token_id,)))
    gold = [task.gold_reward([p] * samples, [c.text for c in outs]) for p, outs in zip(prompts, outputs)]
    flat = [g for row in gold for g in row]
    return {"prompts": num_prompts, "samples": samples, "gold_mean": math.fsum(flat) / len(flat),
            "high_rate": sum(g >= HIGH_REWARD for g in flat) / len(flat),
            "perfect_rate": sum(g == 1.0 for g in flat) / len(flat),
            "prompts_with_high": sum(any(g >= HIGH_REWARD for g in row) for row in gold) / len(gold)}


# ----- aggregation -------------------------------------------------------------------------------

def run_series(run_dir: str | Path) -> dict[str, list[float]]:
    """Per-round series of one finished run, read from its run directory.

    Returns lists indexed by round (0 = the starting policy): ``gold`` (mean held-out gold reward),
    ``kl`` (KL(π ‖ π0) estimate, nats), ``high`` (share of held-out samples with gold ≥ HIGH_REWARD),
    and for rounds ≥ 1 only ``examples`` (training examples: pairs for a pairwise run, scored
    rollouts for an RL run) and ``steps`` (optimizer steps).
    """
    from selm.io import read_jsonl
    from selm.rundir import RunDir

    run = RunDir(Path(run_dir))
    rows = read_jsonl(run.metrics_path)
    high = []
    for row in rows:
        evals = read_jsonl(run.round(row["round"]).file("eval.jsonl"))
        high.append(sum(e["gold_reward"] >= HIGH_REWARD for e in evals) / len(evals))
    return {"gold": [r["gold_reward_mean"] for r in rows], "kl": [r["kl"] for r in rows], "high": high,
            "examples": [r.get("pairs/count", r.get("rollouts/count", 0.0)) for r in rows[1:]],
            "steps": [r.get("train/steps", 0) for r in rows[1:]]}


def aggregate(series: dict[tuple[str, str], list[dict[str, list[float]]]]) -> dict[tuple[str, str], dict[str, list[Any]]]:
    """Per (task, algorithm): per round, the mean ± 95 % t-interval over seeds of each series.

    Args:
        series: (task, algorithm) -> one ``run_series`` dict per seed (equal lengths).
    Returns:
        (task, algorithm) -> name -> [MeanInterval per round]; plus ``steps_total``: the
        MeanInterval of the optimizer steps summed over rounds.
    """
    from selm.eval.intervals import mean_interval

    out: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for key, runs in series.items():
        cell: dict[str, list[Any]] = {}
        for name in ("gold", "kl", "high", "examples"):
            cell[name] = [mean_interval([run[name][r] for run in runs]) for r in range(len(runs[0][name]))]
        cell["steps_total"] = [mean_interval([float(sum(run["steps"])) for run in runs])]
        out[key] = cell
    return out


# ----- outputs -----------------------------------------------------------------------------------

def plot_reward_vs_kl(stats: dict[tuple[str, str], dict[str, list[Any]]], tasks: Sequence[str],
                      algorithms: Sequence[str], path: Path) -> None:
    """One panel per task: held-out gold reward vs KL(π ‖ π0), a line through each algorithm's
    rounds (round 0 is the shared start; RL rows dashed), error bars = 95 % intervals over seeds.
    Saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(tasks), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    colours = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#7f7f7f", "#000000"]
    for ax, task in zip(axes, tasks):
        for colour, algorithm in zip(colours, algorithms):
            cell = stats[(task, algorithm)]
            x = [m.mean for m in cell["kl"]]
            y = [m.mean for m in cell["gold"]]
            ax.errorbar(x, y, xerr=[error_bar(m) for m in cell["kl"]], yerr=[error_bar(m) for m in cell["gold"]],
                        marker="s" if algorithm in RL_ALGORITHMS else "o", markersize=4, capsize=2, color=colour,
                        linestyle="--" if algorithm in RL_ALGORITHMS else "-", label=algorithm)
            ax.annotate(f"r{len(x) - 1}", (x[-1], y[-1]), textcoords="offset points", xytext=(4, 2),
                        fontsize=8, color=colour)
        ax.set_title(f"{task}")
        ax.set_xlabel("KL(π ‖ π0), nats per response")
        ax.set_ylabel("held-out gold reward")
        ax.grid(alpha=0.35)
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def error_bar(m: Any) -> float:
    """An interval's half-width to draw: 0 where it is undefined (NaN: one seed)."""
    return 0.0 if math.isnan(m.half_width) else m.half_width


def _table(stats: dict[tuple[str, str], dict[str, list[Any]]], task: str, algorithms: Sequence[str], name: str,
           digits: int, first_round: int = 0) -> str:
    rounds = len(stats[(task, algorithms[0])][name])
    lines = ["| algorithm | " + " | ".join(f"round {first_round + r}" for r in range(rounds)) + " |",
             "|---|" + "---|" * rounds]
    for algorithm in algorithms:
        lines.append(f"| {algorithm} | " + " | ".join(m.format(digits) for m in stats[(task, algorithm)][name]) + " |")
    return "\n".join(lines)


def _ranking(stats: dict[tuple[str, str], dict[str, list[Any]]], task: str, algorithms: Sequence[str]) -> str:
    """The final round's algorithms by mean gold reward, each marked by whether its interval overlaps the best's."""
    final = sorted(algorithms, key=lambda a: -stats[(task, a)]["gold"][-1].mean)
    best = stats[(task, final[0])]["gold"][-1]
    parts = []
    for algorithm in final:
        m = stats[(task, algorithm)]["gold"][-1]
        below = m.n > 1 and m.mean + m.half_width < best.mean - best.half_width
        parts.append(f"{algorithm} {m.format()}" + (" (interval below the best's)" if below else ""))
    return "; ".join(parts)


def render_section(stats: dict[tuple[str, str], dict[str, list[Any]]], rates: dict[str, dict[str, float]],
                   tasks: Sequence[str], algorithms: Sequence[str], budget: Budget, seeds: int, info: dict[str, Any],
                   plot_name: str) -> str:
    """The Markdown of the study's section of docs/results.md."""
    b = budget
    rl = [a for a in algorithms if a in RL_ALGORITHMS]
    pairwise = [a for a in algorithms if a not in RL_ALGORITHMS]
    kinds = " and ".join(part for part in (f"{len(pairwise)} pairwise" if pairwise else "",
                                           f"{len(rl)} RL" if rl else "") if part)
    rl_text = ""
    if rl:
        rl_text = ("The RL rows get the same sample budget, and every scored sample is a training example; they "
                   "keep their recipes' own batch size, update epochs and learning rate, with π0 as the reference: "
                   + "; ".join(_rl_description(a, info.get("rl_train", {}).get(a)) for a in rl) + ". "
                   + (f"PPO's recipe samples 4 per prompt; here it samples {b.samples_per_prompt}. "
                      if "ppo" in rl else ""))
    out = [
        "## Exploration study",
        "",
        f"{len(algorithms)} online algorithms ({kinds}) from their recipes, with equal sample budgets on each "
        f"built-in task: {b.rounds} rounds × {b.prompts_per_round} new prompts × {b.samples_per_prompt} samples per "
        f"prompt (temperature as in each recipe); held-out evaluation on {b.eval_prompts} prompts × "
        f"{b.eval_samples_per_prompt} samples at temperature 1. {seeds} seeds each. "
        + (f"Cells are mean ± 95 % t-interval over seeds (t_{{0.975, {seeds - 1}}} = {_t(seeds):.3f}). "
           if seeds > 1 else "One seed: no intervals. ")
        + (f"The pairwise rows train with batch {b.batch_size}, {b.epochs} epoch per round. "
           "SAIL-PR takes the PR route on every prompt (sail.pr=1, no offline pairs) and trains on its first two "
           "samples only, as SAIL does; the other pairwise rows pair the best and worst of all samples. "
           if pairwise else "")
        + rl_text + "Everything else is each recipe's own setting.",
        "",
        f"Command: `{info['command']}`  ",
        f"Wall time: {info['wall_s'] / 60:.1f} min ({info['runs_run']} runs in this invocation, "
        f"{info['runs_reused']} reused from an earlier one; {info['workers']} worker processes × "
        f"{info['threads']} torch thread; sum of per-run times {info['run_seconds'] / 60:.1f} min)  ",
        f"Machine: {info['machine']}; load average at start {info['load']}  ",
        f"Date: {info['date']}",
        "",
        "### The tasks: how often the starting policy already answers well",
        "",
        f"Starting policy, {next(iter(rates.values()))['prompts']} held-out prompts × "
        f"{next(iter(rates.values()))['samples']} samples at temperature 1 (high = gold ≥ {HIGH_REWARD}):",
        "",
        "| task | mean gold | samples with high gold | samples with gold 1.0 | prompts with a high sample among "
        f"{next(iter(rates.values()))['samples']} |",
        "|---|---|---|---|---|",
    ]
    for task in tasks:
        r = rates[task]
        out.append(f"| {task} | {r['gold_mean']:.3f} | {100 * r['high_rate']:.2f} % | {100 * r['perfect_rate']:.2f} % "
                   f"| {100 * r['prompts_with_high']:.1f} % |")
    out += ["",
            "`echo` needs exploration: only a response closed by the rare mark reaches high reward, and without it "
            "the best possible reward is 0.4. `sort` pays partial credit for every digit in place and every pair "
            "in order, so ordinary samples already differ in reward and improve step by step.",
            "", f"![gold reward vs KL]({plot_name})", ""]
    for task in tasks:
        out += [f"### Task `{task}`", "",
                f"Final round, by mean gold reward: {_ranking(stats, task, algorithms)}.", "",
                "Held-out gold reward:", "", _table(stats, task, algorithms, "gold", 3), "",
                "KL(π ‖ π0) estimate (nats per response, from the held-out samples):", "",
                _table(stats, task, algorithms, "kl", 2), "",
                f"Share of held-out samples with gold ≥ {HIGH_REWARD}:", "", _table(stats, task, algorithms, "high", 3), "",
                "Training examples per round (rounds 1…; pairs for a pairwise row, scored samples for an RL row):", "",
                _table(stats, task, algorithms, "examples", 0, first_round=1), "",
                "Optimizer steps, all rounds: " + "; ".join(
                    f"{a} {stats[(task, a)]['steps_total'][0].format(0)}" for a in algorithms) + ".", ""]
    return "\n".join(out)


def _rl_description(algorithm: str, settings: Sequence[float] | None) -> str:
    """``grpo: <what it does>, batch 32, 2 update epochs per round, lr 0.0001`` for the section's text."""
    text = f"{algorithm}: {RL_NOTES[algorithm]}"
    if settings is not None:
        batch, epochs, lr = settings
        text += f", batch {batch:g}, {epochs:g} update epoch{'' if epochs == 1 else 's'} per round, lr {lr:g}"
    return text


def _t(seeds: int) -> float:
    from selm.eval.intervals import student_t_quantile

    return student_t_quantile(0.95, seeds - 1)


def machine_description() -> str:
    """CPU model, core count, OS and Python of this machine."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


# ----- command line ------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per (task, algorithm), 0 … N−1 (default 5)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--algorithms", nargs="+", default=list(STUDY_ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "study-exploration", help="run directories")
    parser.add_argument("--docs", type=Path, default=REPO / "docs",
                        help="where results.md (section '<!-- study:begin -->') and the plot are written")
    parser.add_argument("--quick", action="store_true", help="smoke-test budget: 1 round, 8 prompts, 2 samples")
    parser.add_argument("--rounds", type=int, help=f"rounds per run (default {FULL.rounds})")
    parser.add_argument("--prompts-per-round", type=int, help=f"new prompts per round (default {FULL.prompts_per_round})")
    parser.add_argument("--samples", type=int, help=f"samples per prompt (default {FULL.samples_per_prompt})")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    args = parser.parse_args(argv)
    if min(args.seeds, args.workers, args.threads, args.rounds or 1, args.prompts_per_round or 1) < 1:
        parser.error("--seeds, --workers, --threads, --rounds and --prompts-per-round must be >= 1")
    if args.samples is not None and args.samples < 2:
        parser.error("--samples must be >= 2 (a pair needs two responses)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grid (reusing finished runs), aggregate, and write the plot and docs/results.md."""
    os.environ.update(TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
    from selm.errors import UserError
    from selm.report.sections import replace_section
    from selm.tasks import get_task

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["alpha"]:  # the α ablation of SELM's optimism term (examples/study_alpha.py)
        from study_alpha import main as alpha_main

        return alpha_main(argv[1:])
    args = parse_args(argv)
    started = time.perf_counter()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    budget = replace(QUICK if args.quick else FULL, **{key: value for key, value in (
        ("rounds", args.rounds), ("prompts_per_round", args.prompts_per_round),
        ("samples_per_prompt", args.samples)) if value is not None})
    # Build the starting models once, here, before the workers would race to build them.
    rates = {}
    for task in args.tasks:
        get_task(task).starting_model()
        rates[task] = starting_policy_rates(task, num_prompts=budget.start_prompts)
    jobs = make_jobs(args.tasks, args.algorithms, args.seeds, budget, args.output)
    try:
        for job in jobs:
            job.check_reusable()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    rl_train = {job.algorithm: job.train_settings() for job in jobs if job.algorithm in RL_ALGORITHMS}
    todo = [job for job in jobs if not job.finished]
    errors, run_seconds = [], 0.0
    if todo:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(args.workers, len(todo)), initializer=_quiet_worker, initargs=(args.threads,)) as pool:
            bar = tqdm(pool.imap_unordered(run_job, todo), total=len(todo), desc="study runs", unit="run")
            for job, seconds, error in bar:
                run_seconds += seconds
                bar.set_postfix_str(f"{job.task}/{job.algorithm}/seed{job.seed} {seconds:.0f}s")
                if error is not None:
                    errors.append(f"{job.run_dir}: {error}")
    if errors:
        print("runs failed (fix, then rerun the same command: finished runs are kept):", file=sys.stderr)
        print("\n".join(errors), file=sys.stderr)
        return 1
    series: dict[tuple[str, str], list[dict[str, list[float]]]] = {}
    for job in jobs:
        series.setdefault((job.task, job.algorithm), []).append(run_series(job.run_dir))
    stats = aggregate(series)
    plot_name = "study_exploration_quick.png" if args.quick else "study_exploration.png"
    plot_reward_vs_kl(stats, args.tasks, args.algorithms, args.docs / plot_name)
    info = {"command": " ".join(["python examples/study_exploration.py", shlex.join(argv)]).strip(),
            "wall_s": time.perf_counter() - started, "runs_run": len(todo), "runs_reused": len(jobs) - len(todo),
            "workers": args.workers, "threads": args.threads, "run_seconds": run_seconds,
            "machine": machine_description(), "load": load, "rl_train": rl_train,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    body = render_section(stats, rates, args.tasks, args.algorithms, budget, args.seeds, info, plot_name)
    replace_section(args.docs / "results.md", SECTION, body)
    summary = {"budget": asdict(budget), "seeds": args.seeds, "starting_policy": rates, **info}
    (args.output / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.docs / 'results.md'} and {args.docs / plot_name} in {info['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
