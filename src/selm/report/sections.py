"""Marker-delimited sections of a shared Markdown file (e.g. ``docs/results.md``).

Several scripts write into one results page; each owns the text between its markers

    <!-- NAME:begin -->
    ...
    <!-- NAME:end -->

and rewrites only that, so re-running one study never touches another's section.
"""

from __future__ import annotations

from pathlib import Path

from selm.errors import DataError
from selm.io import atomic_write_text


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(path: str | Path, name: str, body: str, title: str = "# Results") -> None:
    """Write ``body`` as section ``name`` of the Markdown file ``path``.

    A missing file is created as ``title`` followed by the section; a file without the section
    gets it appended; otherwise only the text between the markers changes. A file with one marker
    but not the other, or with them twice or out of order, is a DataError naming the file.
    """
    path = Path(path)
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, f"{title}\n\n{block}\n")
        return
    text = path.read_text(encoding="utf-8")
    counts = (text.count(begin), text.count(end))
    if counts == (0, 0):
        atomic_write_text(path, text.rstrip("\n") + f"\n\n{block}\n")
        return
    start, stop = text.find(begin), text.find(end)
    if counts != (1, 1) or stop < start:
        raise DataError(f"{path}: section '{name}' needs exactly one '{begin}' followed by one '{end}'")
    atomic_write_text(path, text[:start] + block + text[stop + len(end):])


def read_section(path: str | Path, name: str) -> str | None:
    """The body of section ``name`` in ``path`` (stripped), or None when the file or section is absent."""
    path = Path(path)
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    begin, end = _markers(name)
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        return None
    return text[start + len(begin):stop].strip()
