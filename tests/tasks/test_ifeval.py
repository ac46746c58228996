"""The ifeval task: disjoint topics, reward = fraction of constraints met, seeded determinism."""

from __future__ import annotations

import random

import pytest

from selm.errors import DataError
from selm.tasks import get_task
from selm.tasks.constraints import Constraint, compatible
from selm.tasks.ifeval import (
    EVAL_TOPICS,
    TRAIN_TOPICS,
    build_response,
    format_prompt,
    parse_prompt,
)


@pytest.fixture(scope="module")
def task():
    return get_task("ifeval")


def test_train_and_held_out_prompts_never_share_a_topic(task):
    assert not set(TRAIN_TOPICS) & set(EVAL_TOPICS) and len(EVAL_TOPICS) >= 10
    train_topics = {parse_prompt(p)[0] for p in task.train_prompts(2000, seed=0)}
    eval_topics = {parse_prompt(p)[0] for p in task.eval_prompts(task.eval_pool_size)}
    assert train_topics <= set(TRAIN_TOPICS) and eval_topics <= set(EVAL_TOPICS)
    assert not train_topics & eval_topics


def test_prompts_have_one_to_three_compatible_constraints(task):
    sizes = set()
    for prompt in task.train_prompts(500, seed=1):
        assert prompt.startswith("Instruction: Write about ") and prompt.endswith("\nAnswer:")
        constraints = parse_prompt(prompt)[1]
        sizes.add(len(constraints))
        assert compatible(constraints)
    assert sizes == {1, 2, 3}


def test_gold_reward_is_the_fraction_of_constraints_met(task):
    prompt = format_prompt("tea", [Constraint("lowercase"), Constraint("include", "history"),
                                   Constraint("max_words", "4")])
    responses = [" tea has a history", " Tea has a history", " Tea has a long and famous past", ""]
    assert task.gold_reward([prompt] * 4, responses) == pytest.approx([1.0, 2 / 3, 0.0, 0.0])
    with pytest.raises(DataError, match="not an ifeval prompt"):
        task.gold_reward(["sort: 1 2 =>"], [" 1 2"])
    with pytest.raises(DataError, match="not a constraint instruction"):
        task.gold_reward(["Instruction: Write about tea. Rhyme.\nAnswer:"], [" x"])


def test_reference_responses_meet_every_constraint(task):
    prompts = task.train_prompts(1000, seed=2) + task.eval_prompts(task.eval_pool_size)
    assert set(task.gold_reward(prompts, task.reference_responses(prompts))) == {1.0}


def test_demonstrations_have_the_format_but_meet_constraints_only_partly(task):
    prompts = task.train_prompts(400, seed=3)
    rng = random.Random(0)
    rewards = task.gold_reward(prompts, [task.demonstration(p, rng) for p in prompts])
    mean = sum(rewards) / len(rewards)
    assert 0.5 < mean < 0.85  # each constraint kept with probability 0.5; some hold by chance anyway
    assert min(rewards) < 1.0 and max(rewards) == 1.0


def test_prompts_and_demonstrations_are_deterministic_by_seed(task):
    assert task.train_prompts(50, seed=7) == get_task("ifeval").train_prompts(50, seed=7)
    assert task.train_prompts(50, seed=7) != task.train_prompts(50, seed=8)
    prompt = task.train_prompts(1, seed=7)[0]
    assert task.demonstration(prompt, random.Random(3)) == task.demonstration(prompt, random.Random(3))
    topic, constraints = parse_prompt(prompt)
    assert build_response(topic, constraints, random.Random(1)) == build_response(topic, constraints, random.Random(1))
