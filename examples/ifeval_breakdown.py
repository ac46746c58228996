"""Per-constraint satisfaction of `ifeval` runs: the starting policy against each run's last round.

    python examples/ifeval_breakdown.py runs/gemma-selm runs/gemma-iterdpo

Reads ``rounds/00/eval.jsonl`` of the first run (π0; every run of a recipe pair shares it) and the
last round's ``eval.jsonl`` of each run, and prints a markdown table: for every constraint kind,
the number of held-out prompts carrying it and the fraction where it is met. A last row gives the
share of responses that start with a lowercase letter (the behaviour the CPU runs learned first).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from selm.io import read_jsonl
from selm.rundir import RunDir
from selm.tasks.constraints import satisfaction
from selm.tasks.ifeval import parse_prompt


def eval_rows(run_dir: Path, round_index: int | None = None) -> tuple[str, list[dict]]:
    """(round label, rows) of ``eval.jsonl`` for ``round_index`` (None: the last round)."""
    rounds = sorted(p for p in (run_dir / "rounds").iterdir() if (p / "eval.jsonl").is_file())
    if not rounds:
        raise SystemExit(f"{run_dir}: no rounds/NN/eval.jsonl")
    folder = rounds[-1] if round_index is None else RunDir(run_dir).round(round_index).path
    return folder.name, read_jsonl(folder / "eval.jsonl")


def per_constraint(rows: list[dict]) -> dict[str, tuple[float, int]]:
    """Constraint kind -> (fraction met, number of prompts with it)."""
    met: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        _, constraints = parse_prompt(row["prompt"])
        for constraint in constraints:
            met[constraint.kind].append(satisfaction([constraint], row["response"]))
    return {kind: (sum(v) / len(v), len(v)) for kind, v in met.items()}


def lowercase_start(rows: list[dict]) -> float:
    return sum(row["response"].strip()[:1].islower() for row in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of the ifeval task")
    args = parser.parse_args()
    columns = [("π0", eval_rows(args.runs[0], 0)[1])]
    for run in args.runs:
        label, rows = eval_rows(run)
        columns.append((f"{run.name}, round {int(label)}", rows))
    tables = [per_constraint(rows) for _, rows in columns]
    print("| constraint | held-out prompts | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for kind in sorted(tables[0]):
        print(f"| `{kind}` | {tables[0][kind][1]} | " + " | ".join(f"{t[kind][0]:.2f}" for t in tables) + " |")
    print("| responses starting lowercase | " + str(len(columns[0][1])) + " | "
          + " | ".join(f"{lowercase_start(rows):.2f}" for _, rows in columns) + " |")


if __name__ == "__main__":
    main()
