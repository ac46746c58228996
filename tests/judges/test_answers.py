"""Reading verdicts and ratings out of real-looking LLM judge answers (``selm.judges.answers``)."""

from __future__ import annotations

import re

import pytest

from selm.judges.answers import parse_rating, parse_verdict, strip_reasoning

# What judge models answer when asked for "a single letter", as seen from instruction-tuned,
# chatty, base and reasoning models, and MT-Bench / AlpacaEval-style prompts.
VERDICTS = [
    ("A", 1.0),
    (" b\n", 0.0),
    ("**A**", 1.0),
    ("Response B.", 0.0),
    ("[[A]]", 1.0),
    ("Answer: A", 1.0),
    ("Answer: **B**", 0.0),
    ("Final verdict: **B**", 0.0),
    ("Verdict - A", 1.0),
    ("My choice: Response B", 0.0),
    ("The better response is A.", 1.0),
    ("The better response is **Response B**.", 0.0),
    ("A\n\nExplanation: Response A sorts the list correctly while Response B drops an item.", 1.0),
    ("A. Response A is more accurate and more concise.", 1.0),
    ("B - it answers the question, A does not.", 0.0),
    ("Response A is better because it is complete.", 1.0),
    ("B is clearly better.", 0.0),
    ("B\n\nWhile Response A is better formatted, B is more accurate.", 0.0),  # the leading verdict counts
    ("Output (a)", 1.0),  # AlpacaEval
    ("Output (b)", 0.0),
    ("After thinking, my verdict: [[B]]", 0.0),
    ("Comparing both: A is concise but wrong; B is correct. [[B]]", 0.0),  # MT-Bench: explanation, then [[X]]
    ("Output your verdict as [[A]] or [[B]]. My verdict: [[A]]", 1.0),  # restated format, then the verdict
    ("[[A]] ... no, wait. [[B]]", 0.0),  # the last verdict
    ("A better answer is B", 0.0),  # "A" as an article, then the conclusion
    ("<think>\nBoth are close. B has a typo; A is cleaner.\n</think>\n\nA", 1.0),
    ("<think>A looks right at first, but [[A]] would be wrong here.</think>[[B]]", 0.0),
    ("Let me compare. B has a typo.</think>\nB", 0.0),  # the opening tag was in the chat template
    ("<thinking>Response B is better.</thinking>\nFinal answer: A", 1.0),
]
NO_VERDICT = [
    "",
    "Both",
    "Both are fine.",
    "A or B",
    "I cannot decide.",
    "Neither A nor B",
    "A good answer would mention the sorting order.",
    "<think>A seems better, but let me check the second response more carefully",  # reasoning cut by max_tokens
]
RATINGS = [
    ("7", 7.0),
    ("8.", 8.0),
    ("Rating: 8/10", 8.0),
    ("Rating: **9**", 9.0),
    ("Score: 2/10.", 2.0),
    ("score = 3.5", 3.5),
    ("[[10]]", 10.0),
    ("Good answer. Rating: [[6]]", 6.0),
    ("7/10 - clear and correct", 7.0),
    ("I would rate this response 7 out of 10.", 7.0),
    ("I'd rate it a 5.", 5.0),
    ("The response deserves 6/10.", 6.0),
    ("[[3]] then, on reflection, [[4]]", 4.0),
    ("<think>maybe a 3? no, it is correct</think>\n8", 8.0),
]
NO_RATING = ["", "0", "11", "seven", "7 or 8", "Rating: 7 or 8", "between 6 and 8", "<think>I would give it 7"]


@pytest.mark.parametrize("text, verdict", VERDICTS)
def test_verdicts(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("text", NO_VERDICT)
def test_no_verdict(text):
    with pytest.raises(ValueError, match=r"no verdict \(A or B\) in the answer"):
        parse_verdict(text)


@pytest.mark.parametrize("text, rating", RATINGS)
def test_ratings(text, rating):
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", NO_RATING)
def test_no_rating(text):
    with pytest.raises(ValueError, match=r"no rating|outside 1-10"):
        parse_rating(text)


def test_strip_reasoning():
    assert strip_reasoning("<think>x</think> A <reasoning>y</reasoning>").strip() == "A"
    assert strip_reasoning("thoughts</think>B") == "B"
    assert strip_reasoning("A <think>unfinished") == "A "


def test_user_regex_replaces_the_rules_and_its_last_match_counts():
    winner = re.compile(r"Winner=>(\w)")
    assert parse_verdict("Winner=>a ... Winner=>B", winner) == 0.0
    with pytest.raises(ValueError):
        parse_verdict("[[A]]", winner)  # the built-in rules are not used
    assert parse_rating("<think>4 stars?</think> 9 stars", re.compile(r"(\d+) stars")) == 9.0
    with pytest.raises(ValueError, match="outside 1-10"):
        parse_rating("12 stars", re.compile(r"(\d+) stars"))


@pytest.mark.parametrize("text", ["Answer" + " " * 50_000 + "?", "Rating" + " *" * 25_000 + "?"],
                         ids=["spaces", "stars"])
def test_long_runs_of_markup_take_linear_time(text):
    # A quadratic regex would take minutes on these (seconds at a tenth of the length).
    with pytest.raises(ValueError):
        parse_verdict(text)
    with pytest.raises(ValueError):
        parse_rating(text)
