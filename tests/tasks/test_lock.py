"""The lock task's gold reward on hand-written responses (no partial credit), its prompts, and its
demonstrations."""

import random

import pytest

from selm.errors import DataError
from selm.tasks import get_task, lock_reward
from selm.tasks.lock import DEMO_KEY_RATE, parse_prompt

DIGITS = [3, 8, 1, 6]  # key 6 6 6 6


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (" 6 6 6 6", 1.0),
        ("6 6 6 6\n", 1.0),  # surrounding whitespace does not matter
        (" 3 8 1 6", 0.3),  # the copy: the decoy
        (" 6 6 6 1", 0.0),  # three of four key digits: no partial credit
        (" 6 6 6", 0.0),  # a key digit missing
        (" 6 6 6 6 6", 0.0),  # an extra digit
        (" 3 8 1 9", 0.0),  # a copy with one digit wrong
        (" 66 6 6", 0.0),  # "66" is one item
        (" 6 6 6 6 !", 0.0),
        ("", 0.0),
    ],
)
def test_hand_computed_rewards(response: str, expected: float) -> None:
    assert lock_reward(DIGITS, response) == expected


def test_a_lock_of_equal_digits_is_opened_by_its_copy() -> None:
    assert lock_reward([4, 4, 4], " 4 4 4") == 1.0 and lock_reward([4, 4, 4], " 4 4 4 4") == 0.0


def test_gold_reward_batch_references_and_errors() -> None:
    task = get_task("lock")
    prompts = ["lock: 3 8 1 8 =>", "lock: 0 5 9 =>"]
    assert task.reference_responses(prompts) == [" 8 8 8 8", " 9 9 9"]
    assert task.gold_reward(prompts, [" 3 8 1 8", " 9 9 9"]) == [0.3, 1.0]
    held_out = task.eval_prompts(200)
    assert task.gold_reward(held_out, task.reference_responses(held_out)) == [1.0] * 200
    with pytest.raises(DataError, match="not a lock prompt"):
        task.gold_reward(["echo: 1 2 3 =>"], [" 1 2 3"])


def test_prompts_are_well_formed_and_disjoint() -> None:
    task = get_task("lock")
    held_out = set(task.eval_prompts(task.eval_pool_size))
    train = task.train_prompts(1000, seed=3)
    assert len(set(train)) == 1000 and not held_out & set(train)
    assert all(3 <= len(parse_prompt(p)) <= 5 for p in train)


def test_demonstrations_rarely_give_the_key() -> None:
    """The starting model imitates these: the key must be rare but present, the rest a (noisy) copy."""
    task = get_task("lock")
    rng = random.Random(0)
    prompts = task.train_prompts(20000, seed=0)
    demos = [task.demonstration(p, rng) for p in prompts]
    keys = task.reference_responses(prompts)
    # The key by design (a copy or a broken copy can also equal it: ~1 % of 3-digit prompts are one digit thrice).
    assert abs(sum(d == k and len(set(d.split())) == 1 for d, k in zip(demos, keys)) / len(demos) - DEMO_KEY_RATE) < 0.005
    rewards = task.gold_reward(prompts, demos)
    rest = [r for r, p in zip(rewards, prompts) if len(set(parse_prompt(p))) > 1 and r != 1.0]
    # Prompts of two or more distinct digits: 80 % exact copies (0.3), the rest broken (0).
    assert abs(rest.count(0.3) / len(rest) - 0.8) < 0.02 and set(rest) == {0.0, 0.3}
