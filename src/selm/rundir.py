"""The run directory: atomic artifacts, per-round manifests with checksums, resumable phases.

    RUN_DIR/config.yaml  metrics.jsonl  rounds/NN/{manifest.json, samples.jsonl, scores.jsonl,
    pairs.jsonl, eval.jsonl, best_of_n.jsonl, train_log.jsonl, policy/, reference_ema.safetensors,
    train/}  cache/  report/

The rows of the JSONL artifacts are typed in ``selm.artifacts``.

Every file is written under a temporary name and renamed into place; a phase is marked done in
the manifest only after its artifact is complete, with the artifact's sha256. On resume, a done
phase whose artifact is missing or fails its checksum is redone, with a warning naming the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from selm.errors import UserError
from selm.io import atomic_write_text, write_jsonl

PHASES = ("sample", "judge", "pair", "train", "evaluate")


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of every file in a folder (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def round_path(run_dir: Path, round_index: int) -> Path:
    """``RUN_DIR/rounds/NN``: the folder of one round (two digits)."""
    return Path(run_dir) / "rounds" / f"{round_index:02d}"


class RoundDir:
    """One round's folder and its manifest."""

    def __init__(self, path: Path, round_index: int):
        self.path = path
        self.round = round_index
        self.manifest_path = path / "manifest.json"
        if self.manifest_path.is_file():
            self.manifest = json.loads(self.manifest_path.read_text())
        else:
            self.manifest = {"round": round_index, "phases": {}}

    def file(self, name: str) -> Path:
        return self.path / name

    def _save(self) -> None:
        atomic_write_text(self.manifest_path, json.dumps(self.manifest, indent=2))

    def is_done(self, phase: str) -> bool:
        """True when ``phase`` was marked done and its artifact still matches its checksum."""
        entry = self.manifest["phases"].get(phase)
        if not entry or entry.get("status") != "done":
            return False
        artifact = self.path / entry["artifact"]
        if not artifact.exists() or sha256_path(artifact) != entry["sha256"]:
            warnings.warn(f"{artifact}: missing or checksum mismatch; redoing phase '{phase}' "
                          f"of round {self.round}", stacklevel=2)
            self.invalidate_from(phase)
            return False
        return True

    def mark_done(self, phase: str, artifact: str, **info: Any) -> None:
        """Record ``phase`` as done with the sha256 of its artifact (file or folder)."""
        self.manifest["phases"][phase] = {"status": "done", "artifact": artifact,
                                          "sha256": sha256_path(self.path / artifact), **info}
        self._save()

    def set_info(self, **info: Any) -> None:
        self.manifest.update(info)
        self._save()

    def invalidate_from(self, phase: str) -> None:
        """Forget ``phase`` and every later phase of this round (their inputs changed)."""
        for later in PHASES[PHASES.index(phase):]:
            self.manifest["phases"].pop(later, None)
        self._save()


class RunDir:
    """The folder of one run."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def round(self, index: int) -> RoundDir:
        return RoundDir(round_path(self.path, index), index)

    def check_writable(self) -> None:
        """Fail before any work if the run directory cannot be written or the disk is (nearly) full.

        A folder this check created is removed again when it fails, so nothing is left behind.
        Temporaries that a killed process left in the run directory are removed (see
        ``remove_stale_temporaries``).
        """
        created = not self.path.exists()
        try:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                probe = self.path / ".write-probe"
                probe.write_text("ok")
                probe.unlink()
            except OSError as exc:
                raise UserError(f"{self.path}: run directory is not writable ({exc.strerror or exc})") from None
            free = shutil.disk_usage(self.path).free
            if free < 50 * 2**20:
                raise UserError(f"{self.path}: only {free / 2**20:.0f} MiB free on disk; need at least 50 MiB")
        except UserError:
            if created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        self.remove_stale_temporaries()

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files / folders (``.name.tmpPID``, ``name.tmp``) a killed process
        left under ``rounds/`` and ``report/``; they were never renamed into place, so no phase
        counts on them. Returns what was removed."""
        removed = []
        for folder in (self.path / "rounds", self.path / "report", self.path):
            if not folder.is_dir():
                continue
            candidates = folder.glob("*") if folder == self.path else folder.rglob("*")
            for item in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
                name = item.name
                stale = (name.startswith(".") and ".tmp" in name) or name.endswith(".tmp")
                if stale and item.exists():
                    shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
                    removed.append(item)
        return removed

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the rounds' metrics (idempotent, so resume never duplicates)."""
        write_jsonl(self.metrics_path, rows)
