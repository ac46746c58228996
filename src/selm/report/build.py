"""``build_report``: read a run directory, write ``RUN_DIR/report/`` (index.html, report.md, PNGs)."""

from __future__ import annotations

from pathlib import Path

from selm.io import atomic_write_bytes
from selm.report.content import build_content
from selm.report.html import render_html
from selm.report.load import load_run
from selm.report.markdown import render_markdown
from selm.report.plots import PLOTS, render_plots


def build_report(run_dir: Path | str) -> Path:
    """Write the report of the run in ``run_dir`` and return the report folder, ``run_dir / "report"``.

    The folder gets ``index.html`` (self-contained: inline CSS, plots embedded as base64 PNGs),
    ``report.md`` (linking the PNGs beside it) and one PNG per plot the run has data for. Rebuilding
    replaces them (and removes plots that no longer have data), so it can be called after every round.

    Raises:
        UserError: ``run_dir/metrics.jsonl`` is missing, empty or malformed (the message names it).
    """
    run = load_run(Path(run_dir))
    plots = render_plots(run)
    content = build_content(run, plots)
    folder = Path(run_dir) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        atomic_write_bytes(folder / plot.filename, plot.png)
    # A plot this build has no data for must not survive from an earlier build beside report.md.
    for filename in {p[0] for p in PLOTS} - {plot.filename for plot in plots}:
        (folder / filename).unlink(missing_ok=True)
    atomic_write_bytes(folder / "report.md", render_markdown(content).encode("utf-8"))
    # index.html last: once it is replaced, every file it describes is already in place.
    atomic_write_bytes(folder / "index.html", render_html(content).encode("utf-8"))
    return folder
