"""Atomic file writes shared by every layer that writes artifacts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

FAULT_ENV = "SELM_FAULT_INJECT"


def inject_fault(point: str) -> None:
    """TEST-ONLY hook: SIGKILL this very process when ``$SELM_FAULT_INJECT`` names ``point``.

    Nothing happens unless the variable is set; it exists so that the fault-injection tests
    (tests/reliability/test_faults.py) can cut a run at an exact place and check that
    ``selm run --resume`` recovers. Never set it outside tests. Points:

    - ``<phase>:<round>``: the phase's work is finished and its artifact is in place, but the
      phase is not yet marked done in the manifest (checked by the round loop);
    - ``<phase>:<round>:done``: just after the phase was marked done (a phase boundary);
    - ``write:<path suffix>``: inside ``atomic_write_bytes``, after the temporary file of the
      artifact whose path ends with the suffix (e.g. ``write:rounds/01/scores.jsonl``) was written
      and fsynced, before it is renamed into place.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    if spec.startswith("write:") and point.startswith("write:"):
        hit = point.endswith("/" + spec[len("write:"):].lstrip("/")) or point == spec
    else:
        hit = point == spec
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, fsync, and rename it into place.

    A reader (a resumed run, a browser refreshing a report) never sees a half-written file, and a
    failed write leaves no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        inject_fault(f"write:{path.as_posix()}")  # test-only; a no-op unless $SELM_FAULT_INJECT is set
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
