"""The sort task's gold reward, on hand-written responses with hand-computed values."""

import random

import pytest

from selm.errors import DataError
from selm.tasks import get_task, sort_reward
from selm.tasks.sort import parse_prompt

DIGITS = [7, 2, 9, 4]  # sorted: 2 4 7 9


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (" 2 4 7 9", 1.0),
        ("2 4 7 9\n", 1.0),  # surrounding whitespace does not matter
        ("", 0.0),
        ("   ", 0.0),
        ("hello world", 0.0),
        (" 0 1 3 5", 0.0),  # sorted, but none of the digits: order only counts with the right digits
        # multiset 1, no position right, pairs in order 3/6: 0.2 + 0 + 0.4 * 0.5
        (" 7 2 9 4", 0.4),
        # multiset 1, positions 2/4, pairs 5/6: 0.2 + 0.4 * 0.5 + 0.4 * 5/6
        (" 2 4 9 7", 0.2 + 0.2 + 0.4 * 5 / 6),
        # a digit missing: multiset 3/4, positions 3/4, all pairs in order: 0.75
        (" 2 4 7", 0.75),
        # a wrong digit: multiset 3/4, positions 3/4 (the 8 is wrong), all pairs in order: 0.75
        (" 2 4 7 8", 0.75),
        # junk item: multiset 3/4, positions 3/4, pairs 3/6 -> order 0.375: 0.15 + 0.3 + 0.15
        (" 2 x 7 9", 0.6),
        # a multi-digit number is junk too
        (" 2 47 7 9", 0.6),
        # an extra digit: L = 5, multiset 4/5, positions 4/5, all pairs in order (ties count): 0.8
        (" 2 4 7 9 9", 0.8),
        # descending: multiset 1, positions 0, no pair in order
        (" 9 7 4 2", 0.2),
    ],
)
def test_hand_computed_rewards(response: str, expected: float) -> None:
    assert sort_reward(DIGITS, response) == pytest.approx(expected, abs=1e-12)


def test_single_item_has_no_pairs() -> None:
    # [7, 2, 9] -> sorted 2 7 9; " 2": L = 3, multiset 1/3, position 1/3, order 1/3 * 1
    assert sort_reward([7, 2, 9], " 2") == pytest.approx(1 / 3)


def test_gold_reward_batch_and_references() -> None:
    task = get_task("sort")
    prompts = ["sort: 7 2 9 4 =>", "sort: 3 1 2 =>"]
    assert task.reference_responses(prompts) == [" 2 4 7 9", " 1 2 3"]
    # " 3 1 2": multiset 1, no position right, 1 of 3 pairs in order: 0.2 + 0.4 / 3
    assert task.gold_reward(prompts, [" 2 4 7 9", " 3 1 2"]) == pytest.approx([1.0, 0.2 + 0.4 / 3])
    held_out = task.eval_prompts(200)
    assert task.gold_reward(held_out, task.reference_responses(held_out)) == [1.0] * 200


def test_bad_inputs_are_data_errors() -> None:
    task = get_task("sort")
    with pytest.raises(DataError, match="2 prompts but 1 responses"):
        task.gold_reward(["sort: 1 2 3 =>", "sort: 3 2 1 =>"], [" 1 2 3"])
    with pytest.raises(DataError, match="not a sort prompt"):
        parse_prompt("sort 1 2 3")


def test_demonstrations_have_the_format_but_not_the_goal() -> None:
    task = get_task("sort")
    rng = random.Random(0)
    prompts = task.train_prompts(2000, seed=0)
    demos = [task.demonstration(p, rng) for p in prompts]
    permutations = sum(sorted(d.split()) == sorted(p[6:-3].split()) for p, d in zip(prompts, demos))
    one_wrong = sum(len(set(d.split()) - set(p[6:-3].split())) == 1 for p, d in zip(prompts, demos))
    assert permutations + one_wrong == 2000
    assert 0.08 < one_wrong / 2000 < 0.12  # the 10 % noise rate
    sorted_rate = sum(r == 1.0 for r in task.gold_reward(prompts, demos)) / 2000
    assert 0.02 < sorted_rate < 0.08  # ≈ 0.9 · mean(1/k!) over k = 3..6 ≈ 0.049
    assert [task.demonstration("sort: 7 2 9 4 =>", random.Random(1)) for _ in range(2)] == [" 4 7 9 2"] * 2
