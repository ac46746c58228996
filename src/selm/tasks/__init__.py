"""Built-in tasks with programmatic gold rewards and small starting models (for the quickstart)."""

from selm.tasks.base import Task
from selm.tasks.echo import EchoTask, echo_reward
from selm.tasks.registry import available_tasks, get_task
from selm.tasks.sort import SortTask, sort_reward
from selm.tasks.starting_model import StartingModelSettings, starting_model_dir

__all__ = ["EchoTask", "SortTask", "StartingModelSettings", "Task", "available_tasks", "echo_reward",
           "get_task", "sort_reward", "starting_model_dir"]
