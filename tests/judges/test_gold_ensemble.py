"""``gold`` (a task's reward, by the task registry) and ``ensemble`` (mean − k·std)."""

from __future__ import annotations

import math

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import build_judge
from selm.tasks import TASKS, Task, get_task, register_task

ENSEMBLE_SOURCE = """
def length(prompt, response):
    return float(len(response))

def vowels(prompt, response):
    return 10.0 * sum(c in "aeiou" for c in response)

def prefer_a(prompt, a, b):
    return 1.0
"""


class ReverseTask(Task):
    """A toy task whose gold reward is 1 for the reversed prompt."""

    name = "reverse"
    version = 1
    max_new_tokens = 8
    stop_strings = ()

    def sample_prompt(self, rng):
        return "".join(rng.choice("abc") for _ in range(3))

    def gold_reward(self, prompts, responses):
        return [1.0 if r == p[::-1] else 0.0 for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts):
        return [p[::-1] for p in prompts]

    def demonstration(self, prompt, rng):
        return prompt


class BadTask(ReverseTask):
    name = "bad"

    def gold_reward(self, prompts, responses):
        return [0.0, math.nan]


@pytest.fixture
def toy_tasks():
    with TASKS.temporary_registrations():
        register_task(ReverseTask)
        register_task(BadTask)
        yield


def test_gold_judge_scores_with_the_registered_task(toy_tasks):
    judge = build_judge({"kind": "gold", "task": "reverse"})
    assert judge.name == "gold 'reverse'"
    assert judge.score(["abc", "abc"], ["cba", "abc"]) == [1.0, 0.0]


def test_gold_judge_of_a_built_in_task_is_its_gold_reward():
    task = get_task("sort")
    prompts = task.eval_prompts(4)
    responses = task.reference_responses(prompts[:2]) + [" 1", " 9 8 7"]
    expected = task.gold_reward(prompts, responses)
    assert expected[:2] == [1.0, 1.0] and max(expected[2:]) < 1.0
    assert build_judge({"kind": "gold", "task": "sort"}).score(prompts, responses) == expected


def test_gold_unknown_task_lists_the_registered_ones(toy_tasks):
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "gold", "task": "add"})
    assert str(err.value) == "judge 'gold': task: unknown task 'add'; available: bad, echo, ifeval, lock, reverse, simplify, sort"


def test_gold_bad_output_is_caught(toy_tasks):
    with pytest.raises(JudgeError, match=r"judge gold 'bad': item 1: score is nan"):
        build_judge({"kind": "gold", "task": "bad"}).score(["a", "b"], ["a", "b"])


def ensemble(mod: str, **options):
    return build_judge({"kind": "ensemble", "judges": [
        {"kind": "function", "callable": f"{mod}:length"},
        {"kind": "function", "callable": f"{mod}:vowels"},
    ], **options})


def test_ensemble_mean_minus_k_std(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    responses = ["xyz", "a", "aei"]
    # length = [3, 1, 3]; vowels = [0, 10, 30]
    # item 0: mean 1.5, std 1.5 -> 1.5 - 2*1.5 = -1.5
    # item 1: mean 5.5, std 4.5 -> 5.5 - 9 = -3.5
    # item 2: mean 16.5, std 13.5 -> 16.5 - 27 = -10.5
    assert ensemble(mod, k=2.0).score(["p"] * 3, responses) == [-1.5, -3.5, -10.5]
    assert ensemble(mod).score(["p"] * 3, responses) == [1.5, 5.5, 16.5]


def test_ensemble_normalized(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    # length = [2, 2, 4, 4] -> z = [-1, -1, 1, 1];  vowels = [0, 20, 0, 20] -> z = [-1, 1, -1, 1]
    # per item (mean, std) = (-1, 0), (0, 1), (0, 1), (1, 0) -> mean - 0.5*std
    responses = ["xy", "ae", "wxyz", "aexy"]
    assert ensemble(mod, k=0.5, normalize=True).score(["p"] * 4, responses) == [-1.0, -0.5, -0.5, 1.0]


def test_ensemble_constant_member_has_zero_zscores(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    # length is 2 for both -> z = [0, 0]; vowels [10, 20] -> z = [-1, 1]; mean = [-0.5, 0.5]
    assert ensemble(mod, normalize=True).score(["p", "p"], ["ab", "ae"]) == [-0.5, 0.5]


def test_ensemble_rejects_pairwise_members_and_names_bad_member(user_module):
    mod = user_module(ENSEMBLE_SOURCE)
    with pytest.raises(ConfigError, match=r"judges\[1\]: pairwise '.*:prefer_a' is pairwise"):
        build_judge({"kind": "ensemble", "judges": [{"kind": "function", "callable": f"{mod}:length"},
                                                    {"kind": "pairwise", "callable": f"{mod}:prefer_a"}]})
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "ensemble", "judges": [{"kind": "function", "callable": f"{mod}:length", "x": 1}]})
    assert str(err.value) == "judge 'ensemble': judges[0]: judge 'function': x: unknown key"
    with pytest.raises(ConfigError, match=r"judge 'ensemble': judges: "):
        build_judge({"kind": "ensemble", "judges": []})
