"""Tasks by name: the built-in ones and any a user registers.

A task is a ``Task`` subclass with a ``name``, decorated with ``register_task``; ``task: <name>``
in a run config, ``builtin:<name>`` as a model and ``{kind: gold, task: <name>}`` as a judge all
find it here (see docs/extending.md).
"""

from __future__ import annotations

from selm.registry import Registry
from selm.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task")

register_task = TASKS.register
available_tasks = TASKS.available


def get_task(name: str) -> Task:
    """A fresh instance of the registered task ``name``; an unknown name is a ConfigError."""
    return TASKS.get(name)()
