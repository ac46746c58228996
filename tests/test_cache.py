"""cache_root: an explicit folder, else $SELM_CACHE_DIR, else ~/.cache/selm."""

from __future__ import annotations

from pathlib import Path

import pytest

from selm.cache import cache_root


def test_cache_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SELM_CACHE_DIR", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "selm"
    monkeypatch.setenv("SELM_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_root("~/mine") == tmp_path / "home" / "mine"
