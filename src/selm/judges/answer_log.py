"""A judge's answers kept on disk as they arrive, so a judge phase cut by a failure continues on resume.

One JSON object per line, ``{"key": ..., "value": ..., "answer": ...}``: the key identifies the
request (a hash of everything sent), the value is what was read from the answer (a verdict or a
rating), the answer is the server's text, for a person reading the file. The file is rewritten
atomically (``selm.io.atomic_write_text``) every ``batch`` new answers or ``interval_s`` seconds,
and on ``close``: a kill loses at most one batch, and a reader never sees a torn line.

It is a cache, not an artifact: an entry is used only for the very request it was made for, so
entries left from an earlier version of the round (samples redone) are never read.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from selm.io import atomic_write_text, read_jsonl


class AnswerLog:
    """Answers by request key, read from ``path`` if it exists and written back to it in batches."""

    def __init__(self, path: Path, batch: int = 16, interval_s: float = 2.0):
        self.path = path
        self.batch = batch
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._rows = {row["key"]: row for row in read_jsonl(path)} if path.is_file() else {}
        self._unsaved = 0
        self._saved_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> float | None:
        """The value kept for the request ``key``, or None if it was not answered yet."""
        with self._lock:
            row = self._rows.get(key)
        return None if row is None else float(row["value"])

    def put(self, key: str, value: float, answer: str) -> None:
        """Keep the answer to request ``key``; written to disk with the batch it completes."""
        with self._lock:
            self._rows[key] = {"key": key, "value": value, "answer": answer}
            self._unsaved += 1
            if self._unsaved >= self.batch or time.monotonic() - self._saved_at >= self.interval_s:
                self._save()

    def close(self) -> None:
        """Write what is not on disk yet."""
        with self._lock:
            if self._unsaved:
                self._save()

    def _save(self) -> None:
        # The whole file each time: small (one line per request) and never half-written.
        atomic_write_text(self.path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self._rows.values()))
        self._unsaved = 0
        self._saved_at = time.monotonic()
