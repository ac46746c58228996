"""The run directory: phases marked done with checksums, redone when their artifact changed, stale
temporaries removed, an unwritable or full disk refused before any work."""

from __future__ import annotations

import hashlib
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from selm.errors import UserError
from selm.io import read_jsonl
from selm.rundir import PHASES, RunDir, sha256_path


def test_sha256_of_a_file_is_of_its_name_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b"abc")
    assert sha256_path(path) == hashlib.sha256(b"samples.jsonl" + b"abc").hexdigest()


def test_sha256_of_a_folder_covers_every_file_name_and_byte(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.bin").write_bytes(b"2")
    (folder / "sub" / "a.bin").write_bytes(b"1")
    expected = hashlib.sha256(b"b.bin" + b"2" + b"sub/a.bin" + b"1").hexdigest()
    assert sha256_path(folder) == expected
    (folder / "sub" / "a.bin").rename(folder / "sub" / "c.bin")  # same bytes, another name
    assert sha256_path(folder) != expected


def test_layout(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.config_path == tmp_path / "config.yaml" and run.metrics_path == tmp_path / "metrics.jsonl"
    assert run.round(3).path == tmp_path / "rounds" / "03" and run.round(3).file("pairs.jsonl").parent.name == "03"


def test_a_done_phase_survives_a_reload_and_is_redone_when_its_artifact_changes(tmp_path: Path) -> None:
    rd = RunDir(tmp_path).round(1)
    for phase in PHASES:
        rd.file(f"{phase}.out").parent.mkdir(parents=True, exist_ok=True)
        rd.file(f"{phase}.out").write_text(phase)
        rd.mark_done(phase, f"{phase}.out", seconds=1.5)
    reloaded = RunDir(tmp_path).round(1)
    assert all(reloaded.is_done(p) for p in PHASES)
    assert reloaded.manifest["phases"]["judge"]["seconds"] == 1.5

    reloaded.file("pair.out").write_text("edited")
    with pytest.warns(UserWarning, match=r"pair.out: missing or checksum mismatch; redoing phase 'pair' of round 1"):
        assert not reloaded.is_done("pair")
    # The phases after it used its artifact: they are redone too; the ones before are kept.
    again = RunDir(tmp_path).round(1)
    assert [p for p in PHASES if again.is_done(p)] == ["sample", "judge"]


def test_a_missing_artifact_is_not_done(tmp_path: Path) -> None:
    rd = RunDir(tmp_path).round(0)
    rd.path.mkdir(parents=True)
    (rd.path / "policy").mkdir()
    (rd.path / "policy" / "w").write_text("x")
    rd.mark_done("train", "policy")
    shutil.rmtree(rd.path / "policy")
    with pytest.warns(UserWarning, match="missing or checksum mismatch"):
        assert not rd.is_done("train")
    assert not rd.is_done("evaluate")  # never marked


def test_set_info_is_saved(tmp_path: Path) -> None:
    RunDir(tmp_path).round(2).set_info(seed=7)
    assert RunDir(tmp_path).round(2).manifest == {"round": 2, "phases": {}, "seed": 7}


def test_write_metrics_rewrites_the_whole_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_metrics([{"round": 0}])
    run.write_metrics([{"round": 0}, {"round": 1, "kl": 0.5}])
    assert read_jsonl(run.metrics_path) == [{"round": 0}, {"round": 1, "kl": 0.5}]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    stale = [tmp_path / "rounds" / "01" / ".samples.jsonl.tmp123", tmp_path / "rounds" / "01" / ".policy.tmp9",
             tmp_path / "report" / "index.html.tmp", tmp_path / ".metrics.jsonl.tmp5"]
    kept = [tmp_path / "rounds" / "01" / "samples.jsonl", tmp_path / "report" / "index.html",
            tmp_path / "rounds" / "01" / ".hidden"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if path.name == ".policy.tmp9" else path.write_text("x")
    (stale[1] / "model.safetensors").write_text("half")
    assert sorted(run.remove_stale_temporaries()) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_check_writable_creates_the_folder(tmp_path: Path) -> None:
    RunDir(tmp_path / "new" / "run").check_writable()
    assert (tmp_path / "new" / "run").is_dir() and list((tmp_path / "new" / "run").iterdir()) == []


def test_check_writable_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(UserError, match=r"taken/run: run directory is not writable"):
        RunDir(tmp_path / "taken" / "run").check_writable()


def test_check_writable_refuses_a_full_disk_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 10 * 2**20, 10 * 2**20))
    with pytest.raises(UserError, match=r"run: only 10 MiB free on disk; need at least 50 MiB"):
        RunDir(tmp_path / "run").check_writable()
    assert not (tmp_path / "run").exists()
