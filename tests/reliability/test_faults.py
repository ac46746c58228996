"""Crash safety by fault injection: SIGKILL a small quickstart run at each phase boundary and in
the middle of each phase, then `selm run --resume`: the run finishes, no sample is lost or
duplicated, and metrics.jsonl equals an uninterrupted run's (timing keys aside).

The kill points come from the test-only hook ``SELM_FAULT_INJECT`` (``selm.io.inject_fault``):

- ``<phase>:<round>:done``  a phase boundary: the phase is marked done, the next has not started;
- ``<phase>:<round>``       the phase's work and artifact are complete, its manifest entry is not;
- ``write:<artifact>``      mid-phase: the artifact's temporary file is written, not yet renamed;
- training is also cut mid-way after its 2nd checkpoint (``train.save_steps=1``).

Also: a truncated / corrupted artifact of each kind is redone on resume with a warning naming
the file, and a full disk or an unwritable run directory is one error line before work starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from selm.cli import main
from selm.io import FAULT_ENV
from selm.loop import resume_run, start_run
from selm.loop.run import TIMING_PREFIXES

SMALL = ["rounds=2", "prompts.per_round=16", "prompts.num_eval=8", "sampling.n=4",
         "eval.samples_per_prompt=1", "train.per_device_train_batch_size=2", "train.save_steps=1"]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)} for row in rows]


def _cmd(output: Path) -> list[str]:
    return [sys.executable, "-m", "selm", "run", "--quiet", "--output", str(output), *SMALL]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name == ".write-probe"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = subprocess.run(_cmd(out), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _check_resumed(out: Path, uninterrupted: Path) -> None:
    assert not (out / "metrics.jsonl").exists() or len(metrics(out)) < 3
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    assert without_timing(metrics(out)) == without_timing(metrics(uninterrupted))
    for k in (1, 2):
        rd = out / "rounds" / f"{k:02d}"
        samples = [json.loads(x) for x in (rd / "samples.jsonl").read_text().splitlines()]
        assert [s["prompt_index"] for s in samples] == list(range(16))  # nothing lost or duplicated
        assert all(len(s["candidates"]) == 4 for s in samples)
        scores = [json.loads(x) for x in (rd / "scores.jsonl").read_text().splitlines()]
        assert [s["prompt_index"] for s in scores] == list(range(16))
        for name in ("samples.jsonl", "scores.jsonl", "pairs.jsonl", "eval.jsonl"):
            assert (rd / name).read_bytes() == (uninterrupted / "rounds" / f"{k:02d}" / name).read_bytes(), name
        assert not (rd / "train").exists()
    assert not _temporaries(out), _temporaries(out)


Point = namedtuple("Point", "spec where")

FAST_POINTS = [
    Point("write:rounds/01/scores.jsonl", "judge, mid-phase: scores written to a temporary, not renamed"),
    Point("pair:1:done", "boundary pair -> train"),
    Point("train:1", "train finished and policy saved, manifest entry missing"),
    Point("evaluate:2", "the last evaluate finished, manifest entry missing"),
]
SLOW_POINTS = [
    Point("evaluate:0:done", "boundary round 0 -> round 1"),
    Point("sample:1", "sample finished, manifest entry missing"),
    Point("write:rounds/01/samples.jsonl", "sample, mid-phase"),
    Point("sample:2:done", "boundary sample -> judge"),
    Point("judge:2", "judge finished, manifest entry missing"),
    Point("judge:1:done", "boundary judge -> pair"),
    Point("write:rounds/02/pairs.jsonl", "pair, mid-phase"),
    Point("pair:2", "pair finished, manifest entry missing"),
    Point("train:2:done", "boundary train -> evaluate"),
    Point("write:rounds/01/eval.jsonl", "evaluate, mid-phase"),
    Point("evaluate:1:done", "boundary round 1 -> round 2"),
    Point("write:metrics.jsonl", "metrics.jsonl being rewritten after round 1"),
]


@pytest.mark.parametrize("point", [*FAST_POINTS, *[pytest.param(p, marks=pytest.mark.slow) for p in SLOW_POINTS]],
                         ids=lambda p: p.spec)
def test_sigkill_at_injected_point_then_resume(tmp_path, uninterrupted, point):
    out = tmp_path / "run"
    proc = subprocess.run(_cmd(out), capture_output=True, text=True, timeout=600,
                          env={**os.environ, FAULT_ENV: point.spec})
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])
    if point.spec.startswith("write:"):  # killed between the temporary's write and its rename
        assert _temporaries(out), "the kill did not happen inside the atomic write"
    _check_resumed(out, uninterrupted)


def test_sigkill_in_the_middle_of_training_then_resume(tmp_path, uninterrupted):
    """Cut round 1's training after its 2nd of 8 steps' checkpoint; resume continues from it."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = out / "rounds" / "01" / "train" / "checkpoint-2"
    deadline = time.monotonic() + 300
    try:
        while not target.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "checkpoint-2 never appeared"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert "train" not in json.loads((out / "rounds" / "01" / "manifest.json").read_text())["phases"]
    _check_resumed(out, uninterrupted)


# ----- corrupted artifacts -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_one_round(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    start_run(None, [*SMALL, "rounds=1"], output=out, progress=False)
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-20])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("artifact,damage,phase", [
    ("rounds/01/samples.jsonl", _truncate, "sample"),
    ("rounds/01/scores.jsonl", _flip_byte, "judge"),
    ("rounds/01/pairs.jsonl", _truncate, "pair"),
    ("rounds/01/policy/model.safetensors", _flip_byte, "train"),
    ("rounds/01/eval.jsonl", _truncate, "evaluate"),
    ("rounds/00/eval.jsonl", Path.unlink, "evaluate"),
], ids=["samples", "scores", "pairs", "policy", "eval", "eval-round0-missing"])
def test_damaged_artifact_is_redone_with_a_warning(tmp_path, finished_one_round, artifact, damage, phase):
    out = tmp_path / "run"
    shutil.copytree(finished_one_round, out)
    before = without_timing(metrics(out))
    damage(out / artifact)
    named = artifact.split("/policy/")[0] + "/policy" if "/policy/" in artifact else artifact
    with pytest.warns(UserWarning, match=f"{Path(named).name}: missing or checksum mismatch; redoing phase '{phase}'") as record:
        resume_run(out, progress=False)
    assert any(str(out / named) in str(w.message) for w in record), [str(w.message) for w in record]
    assert without_timing(metrics(out)) == before
    round_dir = out / Path(artifact).parts[0] / Path(artifact).parts[1]
    manifest = json.loads((round_dir / "manifest.json").read_text())
    assert all(entry["status"] == "done" for entry in manifest["phases"].values())


# ----- unwritable run directory, full disk -------------------------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("selm: error: ") and "Traceback" not in err, err
    return lines[0]


def test_unwritable_run_directory_is_one_error_before_work(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    started = []
    monkeypatch.setattr("selm.loop.run.OnlineRun.execute", lambda self: started.append(1))
    assert main(["run", "--quiet", "--output", str(blocker / "run"), *SMALL]) == 2
    line = _one_error_line(capsys)
    assert str(blocker / "run") in line and "not writable" in line
    assert not started


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_parent_is_one_error_before_work(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert main(["run", "--quiet", "--output", str(parent / "run"), *SMALL]) == 2
        assert "not writable" in _one_error_line(capsys)
    finally:
        parent.chmod(0o700)


def test_full_disk_is_one_error_before_work(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("selm.rundir.shutil.disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    started = []
    monkeypatch.setattr("selm.loop.run.OnlineRun.execute", lambda self: started.append(1))
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--output", str(out), *SMALL]) == 2
    line = _one_error_line(capsys)
    assert str(out) in line and "1 MiB free" in line
    assert not started and not out.exists()  # the folder the check made is removed again


def test_full_disk_on_resume_is_one_error_before_work(tmp_path, capsys, monkeypatch, finished_one_round):
    out = tmp_path / "run"
    shutil.copytree(finished_one_round, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("selm.rundir.shutil.disk_usage", lambda path: usage(1, 1, 0))
    assert main(["run", "--quiet", "--resume", str(out)]) == 2
    assert "0 MiB free" in _one_error_line(capsys)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
