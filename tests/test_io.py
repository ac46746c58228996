"""publish_dir: a cache folder appears complete or not at all."""

import pytest

from selm.io import publish_dir


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
