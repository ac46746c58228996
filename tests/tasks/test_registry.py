"""The task registry: built-in tasks, a user's task registered with the decorator, one-line errors."""

import random

import pytest

from selm.errors import ConfigError, ModelLoadError
from selm.tasks import TASKS, EchoTask, SortTask, Task, available_tasks, get_task, register_task
from selm.tasks.sources import resolve_model_source


class CountTask(Task):
    """Say how many x the prompt has."""

    name = "count"
    version = 1
    max_new_tokens = 4
    stop_strings = ()
    eval_pool_size = 20

    def sample_prompt(self, rng: random.Random) -> str:
        return "count: " + "".join(rng.choice("xy") for _ in range(rng.randint(1, 9))) + " =>"

    def gold_reward(self, prompts, responses):
        return [float(r.strip() == str(p.count("x"))) for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts):
        return [f" {p.count('x')}" for p in prompts]

    def demonstration(self, prompt, rng):
        return f" {rng.randint(1, 9)}"


def test_built_in_tasks_are_registered_by_name():
    assert available_tasks() == ["echo", "ifeval", "lock", "simplify", "sort"]
    assert TASKS.get("sort") is SortTask and TASKS.get("echo") is EchoTask
    first, second = get_task("sort"), get_task("sort")
    assert isinstance(first, SortTask) and first is not second  # a fresh instance each time


def test_a_registered_task_is_found_by_name_until_the_scope_ends():
    with TASKS.temporary_registrations():
        assert register_task(CountTask) is CountTask
        assert available_tasks() == ["count", "echo", "ifeval", "lock", "simplify", "sort"]
        task = get_task("count")
        prompts = task.train_prompts(3, seed=0)
        assert len(set(prompts)) == 3 and not set(prompts) & set(task.eval_prompts(20))
        assert task.gold_reward(prompts, task.reference_responses(prompts)) == [1.0, 1.0, 1.0]
    assert "count" not in available_tasks()


def test_a_name_taken_by_another_class_is_a_programming_error():
    class Impostor(CountTask):
        name = "sort"

    with TASKS.temporary_registrations(), pytest.raises(ValueError, match="task 'sort' is registered twice"):
        register_task(Impostor)
    assert TASKS.get("sort") is SortTask


def test_unknown_names_are_one_line_errors_listing_the_tasks():
    with pytest.raises(ConfigError) as err:
        get_task("nope")
    assert str(err.value) == "unknown task 'nope'; available: echo, ifeval, lock, simplify, sort"
    with pytest.raises(ModelLoadError, match="unknown built-in model 'builtin:nope'; available: builtin:echo"):
        resolve_model_source("builtin:nope")
