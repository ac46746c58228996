"""Where selm keeps what it builds once and reuses: starting models, converted GGUF files, warm-ups,
reference log-probs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$SELM_CACHE_DIR``, else ``~/.cache/selm``."""
    return Path(cache_dir or os.environ.get("SELM_CACHE_DIR") or "~/.cache/selm").expanduser()
