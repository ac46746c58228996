"""The simplify task's gold reward on hand-written rewrites, its prompts, references and demonstrations."""

import random

import pytest

from selm.errors import DataError
from selm.tasks import get_task
from selm.tasks.readability import flesch_kincaid_grade
from selm.tasks.simplify import (
    KEEP_FLOOR,
    TARGET_GRADE,
    format_prompt,
    is_copy,
    meaning_kept,
    parse_prompt,
    simplify_reward,
)

SOURCE = ("The municipal authority utilized the documentation, and consequently the pharmaceutical company "
          "discontinued the medication.")
SPLIT = ("The municipal authority utilized the documentation. Consequently the pharmaceutical company "
         "discontinued the medication.")
SIMPLE = " The city used the papers. So the drug company stopped the drug."


def test_an_exact_copy_and_a_copy_with_text_appended_score_zero() -> None:
    assert simplify_reward(SOURCE, SOURCE) == 0.0
    assert simplify_reward(SOURCE, " " + SOURCE.upper() + "\n") == 0.0
    # Appending short sentences lowers words/sentence: the copy rule takes that hack away.
    assert simplify_reward(SOURCE, SOURCE + " Yes. Yes. Yes.") == 0.0
    assert is_copy(SOURCE, SOURCE + " Yes.") and not is_copy(SOURCE, SPLIT)


def test_a_sentence_split_that_keeps_the_meaning_beats_the_copy() -> None:
    assert meaning_kept(SOURCE, SPLIT) == 1.0
    # Gain = (FK(x) − FK(y)) / (FK(x) − 6), by hand from the module's FK.
    gain = (flesch_kincaid_grade(SOURCE) - flesch_kincaid_grade(SPLIT)) / (flesch_kincaid_grade(SOURCE) - TARGET_GRADE)
    assert 0 < gain < 0.1  # two sentences, the same long words: a small gain
    assert simplify_reward(SOURCE, SPLIT) == pytest.approx(gain, abs=1e-12)
    assert simplify_reward(SOURCE, SPLIT) > simplify_reward(SOURCE, SOURCE)
    # Plain words and the split: grade 2.5, below the target: full credit, all meaning kept.
    assert flesch_kincaid_grade(SIMPLE) < TARGET_GRADE and simplify_reward(SOURCE, SIMPLE) == 1.0


def test_truncation_scores_lower() -> None:
    # 4 of the 9 content words left: below the meaning floor.
    truncated = " The city used the papers."
    assert meaning_kept(SOURCE, truncated) == pytest.approx(4 / 9)
    assert 4 / 9 < KEEP_FLOOR
    assert simplify_reward(SOURCE, truncated) == 0.0 < simplify_reward(SOURCE, SPLIT)
    # Cut mid-sentence (no end mark, as when max_new_tokens runs out): half the credit.
    assert simplify_reward(SOURCE, SIMPLE.rstrip(".")) == pytest.approx(0.5 * simplify_reward(SOURCE, SIMPLE))
    # A lost object keeps the readability (full gain) but not all the meaning: 8 of 9 content words.
    partial = " The city used. So the drug company stopped the drug."
    assert simplify_reward(SOURCE, partial) == pytest.approx(8 / 9)
    assert simplify_reward(SOURCE, partial) < simplify_reward(SOURCE, SIMPLE)
    assert simplify_reward(SOURCE, "") == 0.0 and simplify_reward(SOURCE, " ok.") == 0.0


def test_references_score_one_demonstrations_less_and_prompts_round_trip() -> None:
    task = get_task("simplify")
    held_out = task.eval_prompts(100)
    assert task.gold_reward(held_out, task.reference_responses(held_out)) == [1.0] * 100
    rng = random.Random(0)
    demos = task.gold_reward(held_out, [task.demonstration(p, rng) for p in held_out])
    assert 0.3 < sum(demos) / len(demos) < 0.9  # the starting policy's level: room to improve
    assert set(held_out).isdisjoint(task.train_prompts(200, seed=0))
    source = parse_prompt(held_out[0])
    assert format_prompt(source) == held_out[0] and flesch_kincaid_grade(source) > 12
    with pytest.raises(DataError, match="not a simplify prompt"):
        task.gold_reward(["sort: 1 2 =>"], [" 1 2"])
