"""Atomic writes: a file or folder appears complete or not at all, and no temporary is left behind;
JSONL artifacts read back as written."""

import os

import pytest

from selm.io import atomic_write_bytes, atomic_write_text, publish_dir, read_jsonl, replace_dir_atomically, write_jsonl


def write(files):  # type: ignore[no-untyped-def]
    def build(tmp):  # type: ignore[no-untyped-def]
        for name, text in files.items():
            (tmp / name).write_text(text)
    return build


def test_publishes_a_complete_folder_and_leaves_no_temporaries(tmp_path):
    final = tmp_path / "cache" / "model-abc"
    assert publish_dir(final, write({"weights": "w", "MANIFEST": "{}"}), "MANIFEST") == final
    assert sorted(p.name for p in final.iterdir()) == ["MANIFEST", "weights"]
    assert [p.name for p in final.parent.iterdir()] == ["model-abc"]
    assert oct(final.stat().st_mode & 0o777) == "0o755"


def test_a_failed_build_leaves_nothing(tmp_path):
    final = tmp_path / "model"

    def build(tmp):  # type: ignore[no-untyped-def]
        (tmp / "weights").write_text("half")
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        publish_dir(final, build, "MANIFEST")
    assert list(tmp_path.iterdir()) == []


def test_an_incomplete_folder_is_replaced_and_a_complete_one_kept(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "weights").write_text("old, no manifest")
    publish_dir(final, write({"weights": "new", "MANIFEST": "{}"}), "MANIFEST")
    assert (final / "weights").read_text() == "new"

    # Another process published a complete copy while this one was building: keep that copy.
    def racing_build(tmp):  # type: ignore[no-untyped-def]
        (tmp / "weights").write_text("mine")
        (tmp / "MANIFEST").write_text("{}")

    publish_dir(final, racing_build, "MANIFEST")
    assert (final / "weights").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_write_replaces_a_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "rounds" / "01" / "scores.jsonl"
    atomic_write_bytes(path, b"old")
    atomic_write_text(path, "néw")
    assert path.read_bytes() == "néw".encode()
    assert [p.name for p in path.parent.iterdir()] == ["scores.jsonl"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text("old")

    def no_rename(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_replace_dir_atomically_swaps_the_whole_folder(tmp_path):
    final = tmp_path / "policy"
    replace_dir_atomically(final, write({"model.safetensors": "v1", "stale.bin": "x"}))
    assert replace_dir_atomically(final, write({"model.safetensors": "v2"})) == final
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors"]  # nothing of v1 is left
    assert (final / "model.safetensors").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["policy"]


def test_a_failed_replace_dir_keeps_the_old_folder(tmp_path):
    final = tmp_path / "policy"
    replace_dir_atomically(final, write({"model.safetensors": "v1"}))

    def build(tmp):  # type: ignore[no-untyped-def]
        (tmp / "model.safetensors").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_dir_atomically(final, build)
    assert (final / "model.safetensors").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["policy"]


def test_jsonl_round_trip(tmp_path):
    rows = [{"prompt": "sort: 3 1 =>", "score": 0.25}, {"prompt": "ünïcode ✓", "nested": {"a": [1, None]}}]
    path = tmp_path / "samples.jsonl"
    write_jsonl(path, rows)
    assert path.read_text(encoding="utf-8").count("\n") == 2 and "✓" in path.read_text(encoding="utf-8")
    assert read_jsonl(path) == rows
    path.write_text(path.read_text() + "\n\n")  # blank lines (an editor's trailing newline) are not rows
    assert read_jsonl(path) == rows
    write_jsonl(path, [])
    assert read_jsonl(path) == []
