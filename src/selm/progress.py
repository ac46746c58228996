"""Progress bars that suit where they are shown: a live bar on a terminal, plain lines in a log.

A bar redrawn with carriage returns fills a piped log (``selm run ... 2>&1 | tee log``) with
fragments; where the stream is not a terminal, the same bar prints one ordinary line at most every
``mininterval`` seconds (30 by default) and at its end.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

# Seconds between two lines of a bar shown in a log rather than on a terminal.
LOG_INTERVAL_S = 30.0


class LogLineBar(tqdm):
    """tqdm that writes each refresh as its own line (no carriage return, no cursor movement)."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        self.fp.write((msg if msg is not None else str(self)).strip() + "\n")
        self.fp.flush()
        return True


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)`` on a terminal; a :class:`LogLineBar` refreshed every
    ``LOG_INTERVAL_S`` seconds where the bar's stream (``file``, default stderr) is not one."""
    stream = kwargs.get("file") or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(*args, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs.setdefault("ascii", True)
    return LogLineBar(*args, **kwargs)
