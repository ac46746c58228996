"""Reading a run directory into memory for the report.

Only ``metrics.jsonl`` is required. Everything else (``config.yaml``, ``rounds/NN/train_log.jsonl``,
``rounds/NN/eval.jsonl``) is optional: a report of a run that is still going, or of a run made by an
older or newer selm, shows what is there and skips the rest.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selm.artifacts import EvalRow
from selm.errors import UserError
from selm.eval import keys
from selm.rundir import round_path

Row = dict[str, Any]


@dataclass
class RunData:
    """Everything the report shows, as read from one run directory.

    Attributes:
        run_dir: the run directory.
        metrics: one row per finished round, sorted by ``round`` (round 0 = the starting policy).
        config: the parsed ``config.yaml`` (empty when missing or unreadable).
        config_text: the raw text of ``config.yaml`` ("" when missing).
        train_logs: round -> that round's optimizer-step log rows (rounds without a log are absent).
        evals: round -> that round's held-out eval rows, for round 0 and the last round only.
    """

    run_dir: Path
    metrics: list[Row]
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    train_logs: dict[int, list[Row]] = field(default_factory=dict)
    evals: dict[int, list[EvalRow]] = field(default_factory=dict)

    @property
    def rounds(self) -> list[int]:
        """The finished rounds, ascending."""
        return [row[keys.ROUND] for row in self.metrics]

    @property
    def last_round(self) -> int:
        return self.metrics[-1][keys.ROUND]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(rounds, values) of a numeric metric, leaving out rounds where it is missing, null or NaN."""
        points = self.points(key)
        return [k for k, _ in points], [values[0] for _, values in points]

    def points(self, *metrics: str) -> list[tuple[int, list[float]]]:
        """(round, [value of each metric]) for the rounds where every one of ``metrics`` has a number."""
        out = []
        for row in self.metrics:
            values = []
            for key in metrics:
                value = number(row.get(key))
                if value is None:
                    break
                values.append(value)
            else:
                out.append((row[keys.ROUND], values))
        return out


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is missing, non-numeric, NaN or infinite (bools are not numbers).

    Plots draw only these: an infinite KL or loss would wreck the axis limits of every other point.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def load_run(run_dir: Path | str) -> RunData:
    """Read ``run_dir`` for the report.

    Raises:
        UserError: ``metrics.jsonl`` is missing, empty, or has a line that is not a JSON object
            with an integer ``round``; the message names the file (and line).
    """
    run_dir = Path(run_dir)
    metrics = _load_metrics(run_dir / "metrics.jsonl")
    config, config_text = _load_config(run_dir / "config.yaml")
    rounds = [row[keys.ROUND] for row in metrics]
    train_logs = {}
    for k in rounds:
        log = _read_optional_jsonl(round_path(run_dir, k) / "train_log.jsonl")
        if log:
            train_logs[k] = log
    evals = {}
    for k in sorted({rounds[0], rounds[-1]}):
        rows = _eval_rows(round_path(run_dir, k) / "eval.jsonl")
        if rows:
            evals[k] = rows
    return RunData(run_dir, metrics, config, config_text, train_logs, evals)


def _load_metrics(path: Path) -> list[Row]:
    if not path.is_file():
        raise UserError(f"{path}: not found; is {path.parent} a selm run directory with at least one finished round?")
    by_round: dict[int, Row] = {}
    for line_no, row in _json_lines(path, strict=True):
        if not isinstance(row, dict) or isinstance(row.get("round"), bool) or not isinstance(row.get("round"), int):
            raise UserError(f"{path}:{line_no}: expected a JSON object with an integer 'round'")
        # A later line for the same round supersedes an earlier one (a redone round).
        by_round[row["round"]] = row
    if not by_round:
        raise UserError(f"{path}: empty; no finished round to report")
    return [by_round[k] for k in sorted(by_round)]


def _load_config(path: Path) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        return {}, ""
    text = path.read_text(encoding="utf-8")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The report is still useful without the header fields; the raw text is shown as is.
        warnings.warn(f"{path}: not valid YAML ({exc}); the report header leaves out the config fields", stacklevel=3)
        return {}, text
    return (config if isinstance(config, dict) else {}), text


def _read_optional_jsonl(path: Path) -> list[Row]:
    """Rows of a per-round JSONL artifact; [] when absent (see :func:`_numbered_rows`)."""
    return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path: Path) -> list[tuple[int, Row]]:
    """(line number, row) of every JSON object in a per-round JSONL artifact; [] when absent.

    Unparsable lines are skipped with a warning rather than failing the report: the train log is
    appended step by step, so a run killed mid-write can leave a partial last line.
    """
    if not path.is_file():
        return []
    return [(line_no, row) for line_no, row in _json_lines(path, strict=False) if isinstance(row, dict)]


def _json_lines(path: Path, strict: bool) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a line that is not JSON is a UserError when
    ``strict``, else skipped with a warning."""
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                if strict:
                    raise UserError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
                warnings.warn(f"{path}:{line_no}: not valid JSON; line skipped in the report", stacklevel=6)


def _eval_rows(path: Path) -> list[EvalRow]:
    """The eval rows of ``path``; [] when absent. A row without an eval row's keys is skipped with a warning."""
    rows = []
    for line_no, row in _numbered_rows(path):
        try:
            rows.append(EvalRow.from_json(row))
        except KeyError as exc:
            warnings.warn(f"{path}:{line_no}: not an eval row (no key {exc}); line skipped in the report", stacklevel=3)
    return rows
