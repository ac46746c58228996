"""Built-in tasks by name."""

from __future__ import annotations

from collections.abc import Callable

from selm.errors import ConfigError
from selm.tasks.base import Task
from selm.tasks.echo import EchoTask
from selm.tasks.ifeval import IfEvalTask
from selm.tasks.sort import SortTask

_TASKS: dict[str, Callable[[], Task]] = {"echo": EchoTask, "ifeval": IfEvalTask, "sort": SortTask}


def available_tasks() -> list[str]:
    """Names of the built-in tasks, sorted."""
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """A fresh instance of the built-in task ``name``; an unknown name is a ConfigError."""
    if name not in _TASKS:
        raise ConfigError(f"unknown task '{name}'; available: {', '.join(available_tasks())}")
    return _TASKS[name]()
