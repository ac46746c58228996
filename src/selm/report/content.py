"""What the report says, independent of how it is written out.

The HTML and Markdown writers both render one ``ReportContent``: the header facts, the tables
(cells already formatted as text), the plots and the example responses are decided here, once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from selm.artifacts import EvalRow
from selm.eval import keys
from selm.eval.keys import is_time_key, train_key
from selm.report.load import Row, RunData, number
from selm.report.plots import Plot, is_plotted

MISSING = "–"  # an en dash: the cell has no value (e.g. win rate of round 0)
CONFIG_SUMMARY = "config.yaml (the resolved config, as run)"
NUM_EXAMPLES = 5


@dataclass(frozen=True)
class Fact:
    """One labelled value in the report header."""

    label: str
    value: str


@dataclass(frozen=True)
class Table:
    """A table with a header row; every cell is already formatted text (not escaped)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(frozen=True)
class ExampleResponse:
    """One response to an example prompt, with its scores as a short line of text."""

    text: str
    scores: str


@dataclass(frozen=True)
class Example:
    """One held-out prompt and its response in each shown round (same order as ``Examples.rounds``)."""

    prompt_index: int
    prompt: str
    responses: list[ExampleResponse]


@dataclass(frozen=True)
class Examples:
    """Example responses of a few rounds (usually the first and the last) to the same prompts."""

    rounds: list[int]
    items: list[Example]

    @property
    def description(self) -> str:
        return (f"The first {len(self.items)} held-out prompts, first sample of each; "
                f"responses of round {' and round '.join(map(str, self.rounds))}.")


@dataclass(frozen=True)
class ReportContent:
    """Everything one report shows, ready for a writer."""

    title: str
    facts: list[Fact]
    tables: list[Table]
    plots: list[Plot]
    examples: Examples | None
    config_text: str


def format_value(value: Any) -> str:
    """A metric as table text: floats to 3 significant digits, ints exactly, missing as an en dash.

    Fixed notation from 1e-3 to 1e6 (``0.500``, ``64.0``, ``1230``), scientific outside it.
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float) or math.isnan(value):
        return MISSING
    if math.isinf(value) or value == 0:
        return f"{value:g}"
    rounded = float(f"{value:.3g}")  # round first: 0.99951 must become 1.00, not 0.9995 or 1.000
    exponent = math.floor(math.log10(abs(rounded)))
    if exponent < -3 or exponent >= 6:
        return f"{value:.2e}"
    return f"{rounded:.{max(0, 2 - exponent)}f}"


def format_objective(objective: Any) -> str:
    """``selm (beta=0.1, alpha=0.001)`` from the config's objective: a name, a mapping or a weighted list."""
    if isinstance(objective, dict):
        params = ", ".join(f"{k}={v}" for k, v in objective.items() if k not in ("name", "weight"))
        name = str(objective.get("name", "?"))
        text = f"{name} ({params})" if params else name
        return f"{objective['weight']}·{text}" if "weight" in objective else text
    if isinstance(objective, list):
        return " + ".join(format_objective(item) for item in objective)
    return str(objective)


# ----- header ---------------------------------------------------------------------------------


def header_facts(run: RunData) -> list[Fact]:
    """Run name, recipe, objective, task, model, rounds, and the first → last reward."""
    config = run.config
    facts = [Fact(label, render(config[key])) for label, key, render in
             (("Run", "name", str), ("Recipe", "recipe", str), ("Objective", "objective", format_objective),
              ("Task", "task", str), ("Model", "model_name_or_path", str))
             if config.get(key) is not None]
    planned = config.get("rounds")
    done = run.last_round
    rounds_text = f"{done} of {planned}" if isinstance(planned, int) and planned != done else str(done)
    facts.append(Fact("Rounds", rounds_text + (" (starting policy only)" if done == 0 else "")))
    for label, key in (("Gold reward", keys.GOLD_REWARD_MEAN), ("Judge reward", keys.REWARD_MEAN)):
        rounds, values = run.series(key)
        if len(values) >= 2:
            change = values[-1] - values[0]
            facts.append(Fact(label, f"{format_value(values[0])} → {format_value(values[-1])} "
                                     f"({'+' if change >= 0 else ''}{format_value(change)}, "
                                     f"round {rounds[0]} → {rounds[-1]})"))
        elif values:
            facts.append(Fact(label, f"{format_value(values[0])} (round {rounds[0]})"))
    return facts


# ----- tables ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    label: str
    keys: tuple[str, ...]  # metric keys shown in this column (for "not shown elsewhere")
    cell: Callable[[Row], str]
    present: Callable[[Row], bool]


def _metric(label: str, key: str, std_key: str | None = None) -> _Column:
    """A column of one metric, optionally shown as ``mean ± std``."""

    def cell(row: Row) -> str:
        text = format_value(row.get(key))
        std = number(row.get(std_key)) if std_key else None
        return f"{text} ± {format_value(std)}" if std is not None and text != MISSING else text

    return _Column(label, (key,) + ((std_key,) if std_key else ()), cell,
                   lambda row: format_value(row.get(key)) != MISSING)


def _total_time(row: Row) -> float | None:
    """Seconds over all phases of the round; None when no phase was timed."""
    known = [seconds for k, v in row.items() if is_time_key(k) and (seconds := number(v)) is not None]
    return sum(known) if known else None


SUMMARY_COLUMNS: tuple[_Column, ...] = (
    _metric("judge reward", keys.REWARD_MEAN, keys.REWARD_STD),
    _metric("gold reward", keys.GOLD_REWARD_MEAN, keys.GOLD_REWARD_STD),
    _metric("best-of-N judge reward", keys.BEST_OF_N_REWARD),
    _metric("best-of-N gold reward", keys.BEST_OF_N_GOLD_REWARD),
    _metric("linear-alignment judge reward", keys.LINEAR_ALIGNMENT_REWARD),
    _metric("linear-alignment gold reward", keys.LINEAR_ALIGNMENT_GOLD_REWARD),
    _metric("refusal rate", keys.REFUSAL_RATE),
    _metric("Δ unseen mass", keys.UNSEEN_MASS_CHANGE),
    _metric("Δ unseen ideal mass", keys.UNSEEN_BEST_MASS_CHANGE),
    _metric("KL (nats)", keys.KL),
    _metric("win vs round 0", keys.WIN_RATE_VS_INITIAL),
    _metric("win vs previous", keys.WIN_RATE_VS_PREVIOUS),
    _metric("length (tokens)", keys.LENGTH_MEAN),
    _metric("EOS rate", keys.EOS_RATE),
    _metric("distinct-2", keys.DISTINCT_2),
    _metric("pairs", keys.PAIRS_COUNT),
    _metric("tie rate", keys.PAIRS_TIE_RATE),
    _metric("pair margin", keys.PAIRS_MARGIN_MEAN),
    _metric("train loss", train_key(keys.LOSS)),
    _metric("train accuracy", train_key(keys.REWARD_ACCURACIES)),
    _metric("train margin", train_key(keys.REWARD_MARGINS)),
    _Column("time (s)", (), lambda row: format_value(_total_time(row)), lambda row: _total_time(row) is not None),
)


def summary_table(run: RunData) -> Table:
    """Key metrics, one row per round; columns no round has are left out."""
    columns = [c for c in SUMMARY_COLUMNS if any(c.present(row) for row in run.metrics)]
    return Table("Summary per round", ["round"] + [c.label for c in columns],
                 [[str(row[keys.ROUND])] + [c.cell(row) for c in columns] for row in run.metrics],
                 note="Means over the held-out prompts (± standard deviation); train columns are means over "
                      "the round's optimizer steps; win rates count ties as half.")


def other_metrics_table(run: RunData) -> Table | None:
    """Every numeric metric neither in the summary table nor plotted, one row per metric.

    Transposed (metrics down, rounds across) because these are many (``diag/...``, throughput,
    memory) and rounds are few.
    """
    shown = {keys.ROUND, *(key for c in SUMMARY_COLUMNS for key in c.keys)}
    others: list[str] = []
    for row in run.metrics:
        others.extend(k for k, v in row.items()
                      if k not in shown and not is_plotted(k) and k not in others and format_value(v) != MISSING)
    if not others:
        return None
    return Table("Other metrics", ["metric"] + [f"round {k}" for k in run.rounds],
                 [[key] + [format_value(row.get(key)) for row in run.metrics] for key in others])


# ----- examples -------------------------------------------------------------------------------


def _first_sample_per_prompt(rows: Sequence[EvalRow]) -> dict[int, EvalRow]:
    """prompt_index -> its first sample (lowest ``sample_index``; eval may draw several per prompt)."""
    first: dict[int, EvalRow] = {}
    for row in rows:
        if row.prompt_index not in first or row.sample_index < first[row.prompt_index].sample_index:
            first[row.prompt_index] = row
    return first


def _scores_line(row: EvalRow) -> str:
    parts = [f"{label} {format_value(value)}" for label, value in (("reward", row.reward), ("gold", row.gold_reward))
             if value is not None]
    parts.append(f"{format_value(row.num_tokens)} tokens")
    return " · ".join(parts)


def example_responses(run: RunData) -> Examples | None:
    """The first prompts' responses in the first and the last round, side by side; None without eval files."""
    shown = sorted(run.evals)
    if not shown:
        return None
    by_round = [_first_sample_per_prompt(run.evals[k]) for k in shown]
    common = sorted(set.intersection(*(set(rows) for rows in by_round)))[:NUM_EXAMPLES]
    items = [Example(index, str(by_round[0][index].prompt),
                     [ExampleResponse(str(rows[index].response), _scores_line(rows[index])) for rows in by_round])
             for index in common]
    return Examples(shown, items) if items else None


def build_content(run: RunData, plots: list[Plot]) -> ReportContent:
    """Assemble the report from the run's data and its rendered plots."""
    name = run.config.get("name")
    tables = [summary_table(run)]
    other = other_metrics_table(run)
    if other is not None:
        tables.append(other)
    return ReportContent(title=f"selm run report: {name}" if name else f"selm run report: {run.run_dir.name}",
                         facts=header_facts(run), tables=tables, plots=plots,
                         examples=example_responses(run), config_text=run.config_text)
