"""The run report: ``build_report(run_dir)`` writes ``RUN_DIR/report/{index.html, report.md, *.png}``.

Modules: ``load`` reads the run directory, ``plots`` renders the PNGs, ``content`` decides what the
report says (facts, tables, examples), ``html`` and ``markdown`` write it out, ``build`` ties them.
"""

from selm.report.build import build_report

__all__ = ["build_report"]
