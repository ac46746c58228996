"""The `selm` command line: thin wrappers over the library; heavy imports happen inside commands.

A ``UserError`` (bad config, data, model path, judge output) prints one line and exits with
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _version() -> str:
    """The installed selm's version (its package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selm")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _is_main_process() -> bool:
    """Under torchrun / accelerate launch, only rank 0 prints the final summary."""
    return int(os.environ.get("RANK", "0")) == 0


def _cmd_train(ns: argparse.Namespace) -> int:
    from selm.config import load_config
    from selm.eval.keys import TRAIN_HEADLINE
    from selm.train.config import TrainConfig
    from selm.train.run import run_train

    config = load_config(TrainConfig, ns.recipe, ns.overrides)
    result = run_train(config, resume=ns.resume, progress=not ns.quiet, overwrite=ns.overwrite)
    if not _is_main_process():
        return 0
    shown = {k: v for k, v in result.metrics.items() if k in TRAIN_HEADLINE}
    print(f"done: {result.global_step} steps in {result.train_seconds:.1f} s; "
          + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()) + f"\nmodel saved to {config.output_dir}")
    return 0


def _cmd_run(ns: argparse.Namespace) -> int:
    from selm.loop import resume_run, start_run

    if ns.recipe is not None and "=" in ns.recipe and not Path(ns.recipe).exists():
        ns.overrides, ns.recipe = [ns.recipe, *ns.overrides], None  # `selm run key=value ...`: the quickstart
    if ns.resume is not None:
        if ns.recipe is not None or ns.overrides:
            print("selm: error: --resume takes the run directory only (its config.yaml is reused)", file=sys.stderr)
            return 2
        run_dir = resume_run(Path(ns.resume), progress=not ns.quiet)
    else:
        run_dir = start_run(ns.recipe, ns.overrides, output=ns.output, progress=not ns.quiet)
    if not _is_main_process():
        return 0
    print(f"run directory: {run_dir}\nreport: {run_dir / 'report' / 'index.html'}")
    return 0


def _cmd_report(ns: argparse.Namespace) -> int:
    from selm.report import build_report

    folder = build_report(Path(ns.run_dir))
    print(f"report written to {folder / 'index.html'}")
    return 0


def _cmd_reward_model_train(ns: argparse.Namespace) -> int:
    from selm.config import load_config
    from selm.reward_model import RewardModelConfig, train_reward_model

    config = load_config(RewardModelConfig, ns.recipe, ns.overrides)
    summary = train_reward_model(config, progress=not ns.quiet)
    shown = {k: v for k, v in summary.items() if k in ("train/accuracy", "eval/accuracy", "eval/loss")}
    print("done: " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
          + f"\nreward model saved to {config.output_dir} (judge: {{kind: reward_model, path: {config.output_dir}}})")
    return 0


def _cmd_objectives(ns: argparse.Namespace) -> int:
    from selm.objectives import available_objectives, get_objective
    from selm.objectives.advantages import available_advantage_estimators, get_advantage_estimator

    names = available_objectives()
    width = max(map(len, names + available_advantage_estimators()))
    for name in names:
        objective = get_objective(name)
        print(f"{name:{width}s} {objective!r}  requires: {', '.join(sorted(objective.requires)) or '-'}")
    print("\nadvantage estimators (rollouts.advantage, for grpo / rloo / ppo / pama):")
    for name in available_advantage_estimators():
        print(f"{name:{width}s} {get_advantage_estimator(name)!r}")
    return 0


def _config_help(command: str) -> str:
    """Every key of ``command``'s config (``run``, ``train``, ``reward-model train``), one per line."""
    from dataclasses import replace

    from selm.config import config_keys, format_config_keys

    if command == "run":
        from selm.loop.config import RunConfig
        from selm.sampling import SAMPLERS

        keys = config_keys(RunConfig, defaults=RunConfig())
        # Each backend's own keys, after sampling.options where they go.
        at = next(i for i, key in enumerate(keys) if key.path == "sampling.options") + 1
        keys[at:at] = [replace(key, description=f"(backend {backend}) {key.description}")
                       for backend in SAMPLERS.available()
                       for key in config_keys(SAMPLERS.get(backend).Options, prefix="sampling.options.")]
        return format_config_keys(keys)
    if command == "train":
        from selm.train.config import TrainConfig

        return format_config_keys(config_keys(TrainConfig))
    from selm.reward_model import RewardModelConfig

    return format_config_keys(config_keys(RewardModelConfig))


class _ImportPlugin(argparse.Action):
    """``--plugin MODULE``: import the module as soon as it is parsed, so that the objectives, judges,
    sampling backends and tasks it registers can be named in configs (and listed by ``--help-config``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        import importlib

        try:
            importlib.import_module(str(values))
        except ImportError as exc:
            parser.error(f"--plugin {values}: cannot import it ({exc})")


class _HelpConfig(argparse.Action):
    """``--help-config``: print every config key with its type, default and meaning, then exit (like ``--help``)."""

    def __init__(self, option_strings: list[str], dest: str, command: str):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print every config key (dotted path) with its type, default and meaning, and exit")
        self.command = command

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(_config_help(self.command))
        parser.exit()


def _cmd_bench(ns: argparse.Namespace) -> int:
    if ns.online:
        from selm.bench.online_run import run_online_bench

        run_online_bench(quick=ns.quick, json_path=ns.json, shapes=ns.shapes, threads=ns.threads,
                         objectives=ns.objectives)
        return 0
    from selm.bench.run import run_bench

    run_bench(quick=ns.quick, json_path=ns.json, shapes=ns.shapes, threads=ns.threads, objectives=ns.objectives)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selm", description="Online, self-exploring preference alignment of LLMs.")
    parser.add_argument("--version", action="version", version=f"selm {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--plugin", action=_ImportPlugin, metavar="MODULE",
                        help="import this Python module first (repeatable): the objectives, judges, sampling "
                             "backends and tasks it registers can then be named in configs (docs/extending.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="offline preference training from a recipe")
    train.add_argument("recipe", help="YAML recipe (see recipes/)")
    train.add_argument("overrides", nargs="*", default=[],
                       help="key=value overrides, e.g. train.learning_rate=1e-5 (optional)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    train.add_argument("--overwrite", action="store_true", help="replace a trained model already in output_dir")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--help-config", action=_HelpConfig, command="train")
    train.set_defaults(func=_cmd_train)

    run = sub.add_parser("run", help="online rounds: sample, judge, pair, train, evaluate (no recipe: the quickstart)",
                         epilog="Every config key, with its type, default and meaning: selm run --help-config. "
                                "Recipes to start from: recipes/ (README: Recipes; your own data: recipes/own-data.yaml).")
    run.add_argument("recipe", nargs="?", help="YAML recipe; omitted: the built-in quickstart")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=5 sampling.n=8")
    run.add_argument("--output", help="run directory (default: runs/<name>-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run that was cut")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--help-config", action=_HelpConfig, command="run")
    run.set_defaults(func=_cmd_run)

    report = sub.add_parser("report", help="(re)build the HTML/Markdown report of a run directory")
    report.add_argument("run_dir")
    report.set_defaults(func=_cmd_report)

    bench = sub.add_parser("bench", help="time selm against TRL, a naive DPO loop and an SFT step (docs/performance.md)")
    bench.add_argument("--quick", action="store_true", help="the small model only (< 5 min on 2 CPU cores)")
    bench.add_argument("--json", metavar="FILE", help="also write every measurement and the ratios as JSON")
    bench.add_argument("--shapes", nargs="+", choices=["gemma3-270m", "small", "tiny"],
                       help="model shapes to measure (default: gemma3-270m and small; small with --quick); "
                            "ratios use the first")
    bench.add_argument("--objectives", nargs="+", choices=["dpo", "grpo"],
                       help="only these objectives' training rows (no sampler rows); with --online: only these "
                            "objectives' rounds; default: all rows")
    bench.add_argument("--online", action="store_true",
                       help="time whole online rounds (sample, judge, log-probs, update): selm's loop against TRL's "
                            "OnlineDPOTrainer and GRPOTrainer on the same work")
    bench.add_argument("--threads", type=int, default=0, metavar="N",
                       help="torch threads in each measuring process (default: torch's choice, all cores)")
    bench.set_defaults(func=_cmd_bench)

    reward_model = sub.add_parser("reward-model", help="train reward models for the reward_model judge")
    rm_sub = reward_model.add_subparsers(dest="rm_command", required=True)
    rm_train = rm_sub.add_parser("train", help="Bradley–Terry reward model (or ensemble) from preference pairs")
    rm_train.add_argument("recipe", help="YAML recipe (see recipes/reward-model-sort.yaml)")
    rm_train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. ensemble_size=3")
    rm_train.add_argument("--quiet", action="store_true", help="no progress bars")
    rm_train.add_argument("--help-config", action=_HelpConfig, command="reward-model train")
    rm_train.set_defaults(func=_cmd_reward_model_train)

    objectives = sub.add_parser("objectives", help="list the registered objectives and their defaults")
    objectives.set_defaults(func=_cmd_objectives)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `selm` command; returns the exit code."""
    parser = build_parser()
    # Overrides may follow options (`selm train r.yaml --quiet train.max_steps=3`): argparse stops
    # collecting positionals at the first option, so leftover key=value words are overrides too.
    ns, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(ns, "overrides") or any("=" not in word or word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.overrides = [*ns.overrides, *extra]
    from transformers.utils import logging as hf_logging

    from selm.errors import UserError

    # Weight loading/saving bars from transformers repeat every round; selm shows its own.
    hf_logging.disable_progress_bar()

    try:
        return ns.func(ns)
    except UserError as exc:
        if ns.debug:
            raise
        print(f"selm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("selm: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        cause = mismatched_vision_packages()
        if not cause or ns.debug:
            raise
        print(f"selm: error: {exc}: {cause}", file=sys.stderr)
        return 2


def mismatched_vision_packages() -> str:
    """Why transformers cannot import its models, when the cause is torchvision / torchaudio /
    torchcodec built for another torch (vLLM's CPU build pulls CUDA ones); "" otherwise."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    build = torch.__version__.partition("+")[2]
    found = []
    for name in ("torchvision", "torchaudio", "torchcodec"):
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        local = installed.partition("+")[2]
        if local != build:
            found.append(f"{name} {installed}")
    if not found:
        return ""
    return (f"{', '.join(found)} {'was' if len(found) == 1 else 'were'} not built for this torch ({torch.__version__}) "
            f"and break transformers' imports; text models do not need them: pip uninstall -y "
            f"{' '.join(f.split()[0] for f in found)}")


if __name__ == "__main__":
    sys.exit(main())
