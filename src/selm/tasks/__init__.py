"""Tasks with programmatic gold rewards and small starting models (built-in: echo, ifeval, lock, simplify, sort)."""

# Importing a module registers its task.
from selm.tasks import ifeval, simplify  # noqa: F401
from selm.tasks.base import Task
from selm.tasks.echo import EchoTask, echo_reward
from selm.tasks.lock import LockTask, lock_reward
from selm.tasks.registry import TASKS, available_tasks, get_task, register_task
from selm.tasks.sort import SortTask, sort_reward
from selm.tasks.starting_model import StartingModelSettings, starting_model_dir

__all__ = ["TASKS", "EchoTask", "LockTask", "SortTask", "StartingModelSettings", "Task", "available_tasks", "echo_reward",
           "get_task", "lock_reward", "register_task", "sort_reward", "starting_model_dir"]
