"""The echo task's gold reward on hand-written responses, its prompts, and its demonstrations."""

import random

import pytest

from selm.errors import DataError
from selm.tasks import echo_reward, get_task
from selm.tasks.echo import DEMO_MARK_RATE, parse_prompt

DIGITS = [7, 2, 7, 4]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (" 7 2 7 4 !", 1.0),
        (" 7 2 7 4", 0.4),  # an exact copy without the mark
        ("7 2 7 4 !\n", 1.0),  # surrounding whitespace does not matter
        (" 7 2 7 4!", 0.75 * 0.4),  # "4!" is one junk item: 3 of 4 in place, and no separate mark
        ("", 0.0),
        (" !", 0.0),  # the mark alone: nothing copied
        (" ! ! !", 0.0),
        # one digit wrong: copy 3/4, marked
        (" 7 2 5 4 !", 0.75),
        (" 7 2 5 4", 0.75 * 0.4),
        # a digit missing: L = 4, 3 in place
        (" 7 2 7 !", 0.75),
        # an extra digit: L = 5, 4 in place
        (" 7 2 7 4 4 !", 0.8),
        # the mark not at the end is junk: items 7 2 ! 7 4 (L = 5), 2 in place; not marked
        (" 7 2 ! 7 4", 2 / 5 * 0.4),
        # shifted by one: nothing in place
        (" 2 7 4 !", 0.0),
    ],
)
def test_hand_computed_rewards(response: str, expected: float) -> None:
    assert echo_reward(DIGITS, response) == pytest.approx(expected, abs=1e-12)


def test_gold_reward_batch_references_and_errors() -> None:
    task = get_task("echo")
    prompts = ["echo: 7 2 7 4 =>", "echo: 0 0 1 =>"]
    assert task.reference_responses(prompts) == [" 7 2 7 4 !", " 0 0 1 !"]
    assert task.gold_reward(prompts, [" 7 2 7 4 !", " 0 0 1"]) == pytest.approx([1.0, 0.4])
    held_out = task.eval_prompts(200)
    assert task.gold_reward(held_out, task.reference_responses(held_out)) == [1.0] * 200
    with pytest.raises(DataError, match="not an echo prompt"):
        task.gold_reward(["sort: 1 2 3 =>"], [" 1 2 3"])
    with pytest.raises(DataError, match="2 prompts but 1 responses"):
        task.gold_reward(prompts, [" 1"])


def test_prompts_are_well_formed_and_disjoint() -> None:
    task = get_task("echo")
    held_out = set(task.eval_prompts(1000))
    train = task.train_prompts(500, seed=3)
    assert len(set(train)) == 500 and not held_out & set(train)
    assert all(3 <= len(parse_prompt(p)) <= 6 for p in train)


def test_demonstrations_rarely_carry_the_mark() -> None:
    """The starting model imitates these: the mark must be rare but present, the rest a copy."""
    task = get_task("echo")
    rng = random.Random(0)
    prompts = task.train_prompts(20000, seed=0)
    demos = [task.demonstration(p, rng) for p in prompts]
    marked = sum(d.endswith(" !") for d in demos) / len(demos)
    assert abs(marked - DEMO_MARK_RATE) < 0.003  # binomial sd at n = 20000 is 0.0007
    rewards = task.gold_reward(prompts, demos)
    assert sum(r >= 0.8 for r in rewards) / len(rewards) < 0.02
    # Unmarked demonstrations copy every digit 80 % of the time (reward exactly 0.4).
    unmarked = [r for r, d in zip(rewards, demos) if not d.endswith(" !")]
    assert abs(sum(r == 0.4 for r in unmarked) / len(unmarked) - 0.8) < 0.02
