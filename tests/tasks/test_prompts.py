"""Task prompts: deterministic, well-formed, and train/held-out disjoint; the task registry."""

import random

import pytest

from selm.errors import ConfigError
from selm.tasks import SortTask, available_tasks, get_task
from selm.tasks.sort import parse_prompt


def test_registry() -> None:
    assert {"ifeval", "sort"} <= set(available_tasks()) and available_tasks() == sorted(available_tasks())
    assert isinstance(get_task("sort"), SortTask)
    assert get_task("sort").name == "sort"
    with pytest.raises(ConfigError, match="unknown task 'nope'; available: .*ifeval.*sort"):
        get_task("nope")


def test_prompts_are_deterministic() -> None:
    assert get_task("sort").eval_prompts(3) == ["sort: 2 6 7 =>", "sort: 4 7 6 =>", "sort: 9 6 3 5 7 =>"]
    assert get_task("sort").train_prompts(3, seed=0) == ["sort: 6 2 7 =>", "sort: 4 3 5 6 9 8 =>", "sort: 3 6 7 0 4 =>"]
    assert get_task("sort").train_prompts(3, seed=1) == ["sort: 2 8 4 3 =>", "sort: 5 9 3 1 7 2 =>", "sort: 4 5 8 0 =>"]
    task = get_task("sort")
    assert task.eval_prompts(64) == get_task("sort").eval_prompts(100)[:64]
    assert task.train_prompts(500, seed=7) == task.train_prompts(500, seed=7)


def test_train_and_held_out_are_disjoint() -> None:
    task = get_task("sort")
    held_out = set(task.eval_prompts(task.eval_pool_size))
    assert len(held_out) == task.eval_pool_size == 1000
    for seed in range(5):
        train = task.train_prompts(5000, seed=seed)
        assert len(set(train)) == 5000  # distinct within a call
        assert held_out.isdisjoint(train)


def test_prompts_are_well_formed() -> None:
    task = get_task("sort")
    prompts = task.train_prompts(2000, seed=3) + task.eval_prompts(1000)
    lengths = [len(parse_prompt(p)) for p in prompts]
    assert min(lengths) == 3 and max(lengths) == 6
    assert all(len(set(parse_prompt(p))) == len(parse_prompt(p)) for p in prompts)  # distinct digits
    assert task.max_new_tokens == 10 and task.stop_strings == ("\n",)


def test_impossible_requests_are_config_errors() -> None:
    task = get_task("sort")
    with pytest.raises(ConfigError, match="between 0 and 1000, got 1001"):
        task.eval_prompts(1001)
    with pytest.raises(ConfigError, match="must be >= 0, got -1"):
        task.train_prompts(-1, seed=0)

    class TwoPrompts(SortTask):
        eval_pool_size = 1

        def sample_prompt(self, rng: random.Random) -> str:
            return rng.choice(["sort: 1 2 3 =>", "sort: 3 2 1 =>"])

    tiny = TwoPrompts()
    assert tiny.train_prompts(1, seed=0) == ["sort: 3 2 1 =>"]  # the other one is held out
    assert tiny.eval_prompts(1) == ["sort: 1 2 3 =>"]
    with pytest.raises(ConfigError, match="cannot generate 2 distinct prompts"):
        tiny.train_prompts(2, seed=0)
