"""Atomic file and folder writes shared by every layer that writes artifacts or caches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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


def publish_dir(final: Path, build: Callable[[Path], None], manifest: str) -> Path:
    """Build a cache folder under a temporary name beside ``final``, then rename it into place.

    ``build(tmp)`` writes the folder, the file named ``manifest`` last: its presence marks a
    complete folder. A folder at ``final`` without it (left by older code) is replaced; if another
    process publishes a complete ``final`` first, its copy is kept and this one removed. A failed
    or interrupted build leaves nothing at ``final``.

    Returns:
        ``final``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the published folder is an ordinary cache entry
        if final.exists() and not (final / manifest).is_file():
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / manifest).is_file():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def replace_dir_atomically(final: Path, build: Callable[[Path], None]) -> Path:
    """Write a folder under a temporary name beside ``final``, then swap it into place.

    ``build(tmp)`` writes the folder's content. An older ``final`` is replaced; a failed or
    interrupted build leaves the old ``final`` (or nothing) and no temporary folder. For folders
    this run owns (checkpoints, round policies, reference weights); caches shared between runs use
    :func:`publish_dir`.

    Returns:
        ``final``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomically write one JSON object per line."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL artifact of this run (written by selm, so errors are not user errors)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
