"""Model sources with the built-in ones: ``builtin:<task>`` is the task's starting model, built and
cached on first use, so the quickstart and the tests never download weights."""

from __future__ import annotations

from selm.errors import ModelLoadError
from selm.modeling.sources import resolve_model_path
from selm.tasks.registry import available_tasks, get_task

BUILTIN_PREFIX = "builtin:"


def resolve_model_source(name_or_path: str, key: str = "model_name_or_path") -> str:
    """Return a hub id or local folder for ``name_or_path``: ``builtin:<task>`` builds (once) the
    task's starting model; anything else goes to :func:`selm.modeling.sources.resolve_model_path`
    (hub id, folder, ``*.gguf``, ``pypi:<package>``). ``key`` names the config key in errors."""
    if not name_or_path.startswith(BUILTIN_PREFIX):
        return resolve_model_path(name_or_path, key)
    task_name = name_or_path[len(BUILTIN_PREFIX):]
    if task_name not in available_tasks():
        raise ModelLoadError(f"unknown built-in model '{name_or_path}'; available: "
                             + ", ".join(BUILTIN_PREFIX + t for t in available_tasks()))
    return str(get_task(task_name).starting_model())
