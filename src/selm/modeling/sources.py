"""Where a model comes from: a hub id, a local folder, or a built-in model (``builtin:<task>``).

Built-in models are the small starting policies that the project builds itself (see
``selm.tasks``), so the quickstart and the tests never download weights.
"""

from __future__ import annotations

from selm.errors import ModelLoadError

BUILTIN_PREFIX = "builtin:"


def resolve_model_source(name_or_path: str) -> str:
    """Return a hub id or local path for ``name_or_path``, building a built-in model if asked."""
    if not name_or_path.startswith(BUILTIN_PREFIX):
        return name_or_path
    from selm.tasks import available_tasks, get_task

    task_name = name_or_path[len(BUILTIN_PREFIX):]
    if task_name not in available_tasks():
        raise ModelLoadError(f"unknown built-in model '{name_or_path}'; available: "
                             + ", ".join(BUILTIN_PREFIX + t for t in available_tasks()))
    return str(get_task(task_name).starting_model())
