"""The report as one self-contained HTML page: inline CSS, plots embedded as base64 PNG data URIs.

Every piece of text from the run (config, prompts, responses, metric names) goes through
``html.escape``: model outputs are arbitrary text and may well contain markup.
"""

from __future__ import annotations

import base64
from html import escape

import selm
from selm.report.content import CONFIG_SUMMARY, Examples, ReportContent, Table
from selm.report.plots import Plot

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0072b2; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 14px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
nav { font-size: 14px; margin-top: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 0; }
.facts div { flex: 1 1 200px; background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
             padding: 8px 12px; }
.facts dt { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.facts dd { margin: 2px 0 0; font-weight: 600; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 5px 7px; border-bottom: 1px solid var(--line); }
th { background: var(--soft); text-align: right; font-weight: 600; vertical-align: bottom; }
td { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
th:first-child { background: var(--soft); }
tbody tr:nth-child(even) td { background: #fbfcfd; }
tbody tr:last-child td { border-bottom: none; }
.note, figcaption, .muted { color: var(--muted); font-size: 13px; }
figure { margin: 0 0 18px; border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
figure img { display: block; margin: 0 auto; max-width: 100%; height: auto; }
figure:not(.wide) img { width: 860px; }
figure.wide img { width: 100%; }
figcaption { margin-top: 6px; }
.example { border: 1px solid var(--line); border-radius: 6px; padding: 12px; margin-bottom: 14px; }
.example h3 { margin-top: 0; }
.responses { display: flex; gap: 12px; margin-top: 10px; }
.responses > div { flex: 1 1 0; min-width: 0; }
.response-head { display: flex; justify-content: space-between; gap: 8px; font-size: 13px; margin-bottom: 4px; }
.response-head .scores { color: var(--muted); font-variant-numeric: tabular-nums; }
pre { margin: 0; padding: 8px 10px; background: var(--soft); border: 1px solid var(--line); border-radius: 4px;
      white-space: pre-wrap; overflow-wrap: anywhere; min-height: 2.2em;
      font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
details summary { cursor: pointer; color: var(--accent); margin-bottom: 8px; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>\n" for row in table.rows)
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (f"<h3>{escape(table.title)}</h3>\n<div class=\"table-wrap\"><table>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}</tbody></table></div>\n{note}\n")


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    css_class = ' class="wide"' if plot.wide else ""
    return (f'<figure{css_class}><img src="data:image/png;base64,{data}" alt="{escape(plot.title)}">'
            f"<figcaption><strong>{escape(plot.title)}.</strong> {escape(plot.caption)}</figcaption></figure>\n")


def _examples(examples: Examples) -> str:
    parts = [f'<p class="muted">{escape(examples.description)}</p>\n']
    for item in examples.items:
        cells = "".join(
            f'<div><div class="response-head"><strong>Round {k}</strong>'
            f'<span class="scores">{escape(response.scores)}</span></div><pre>{escape(response.text)}</pre></div>'
            for k, response in zip(examples.rounds, item.responses, strict=True))
        parts.append(f'<article class="example"><h3>Prompt {item.prompt_index}</h3><pre>{escape(item.prompt)}</pre>'
                     f'<div class="responses">{cells}</div></article>\n')
    return "".join(parts)


def render_html(content: ReportContent) -> str:
    """The whole report as one HTML document (opens offline: no external CSS, scripts or images)."""
    facts = "".join(f"<div><dt>{escape(f.label)}</dt><dd>{escape(f.value)}</dd></div>" for f in content.facts)
    sections = [("metrics", "Metrics", "".join(_table(t) for t in content.tables))]
    if content.plots:
        sections.append(("plots", "Plots", "".join(_figure(p) for p in content.plots)))
    if content.examples is not None:
        sections.append(("examples", "Example responses", _examples(content.examples)))
    if content.config_text:
        config = f"<details><summary>{CONFIG_SUMMARY}</summary><pre>{escape(content.config_text)}</pre></details>"
        sections.append(("config", "Configuration", config))
    nav = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title, _ in sections)
    body = "".join(f'<section id="{anchor}"><h2>{title}</h2>\n{html}</section>\n' for anchor, title, html in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(content.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<header><h1>{escape(content.title)}</h1>\n<dl class=\"facts\">{facts}</dl>\n<nav>{nav}</nav></header>\n"
            f"{body}<footer>Generated by selm {escape(selm.__version__)}.</footer>\n</main>\n</body>\n</html>\n")
