"""Each verifiable-instruction checker on hand-written passing and failing responses."""

from __future__ import annotations

import pytest

from selm.tasks.constraints import (
    Constraint,
    compatible,
    count_sentences,
    count_words,
    parse_instructions,
    satisfaction,
)

CASES = [
    # (constraint, passing responses, failing responses)
    (Constraint("max_words", "5"), [" One two three four five.", "- a\n- b"], [" One two three four five six."]),
    (Constraint("min_words", "4"), [" Cats sleep all day.", "cats sleep a lot today"], [" Cats sleep a-lot."]),
    (Constraint("sentences", "2"), [" Cats sleep. Dogs bark!", " Is it late? Yes", " It costs 3.5 dollars. Fine."],
     [" Cats sleep.", " One. Two. Three.", " Cats sleep... dogs bark... birds sing."]),
    (Constraint("include", "history"), [" The HISTORY of tea.", " history"], [" Historyless tea.", " prehistory"]),
    (Constraint("forbid", "very"), [" Everything is fine.", " Every day."], [" It is Very nice.", " very"]),
    (Constraint("bullets", "2"), ["\n- tea\n- milk", "- tea\n\n- milk\n"],
     ["\n- tea\n- milk\n- sugar", "\n- tea\nmilk", "\n* tea\n* milk", "\n- tea\n- "]),
    (Constraint("json", "title,summary"), ['\n{"summary": "b", "title": "a"}', ' {"title": 1, "summary": [2]}'],
     ['\n{"title": "a"}', '\n{"title": "a", "summary": "b", "x": 1}', "\ntitle: a", '\n["title", "summary"]',
      '\n{"title": "a", "summary": "b"} more']),
    (Constraint("lowercase"), [" cats sleep. 42!", " éa"], [" Cats sleep.", " 42"]),
    (Constraint("uppercase"), [" CATS SLEEP 42.", " ÉA"], [" CATS sleep.", " ..."]),
    (Constraint("ending", "That is all"), [" Cats sleep. That is all", " cats. that is all  \n"],
     [" That is all. Cats sleep.", " Cats sleep. That is all."]),
    (Constraint("no_commas"), [" Cats sleep and dogs bark."], [" Cats sleep, dogs bark."]),
]


@pytest.mark.parametrize(("constraint", "passing", "failing"), CASES, ids=[c[0].kind for c in CASES])
def test_checker_on_hand_written_responses(constraint, passing, failing):
    for response in passing:
        assert constraint.check(response), response
    for response in failing:
        assert not constraint.check(response), response


@pytest.mark.parametrize("constraint", [c[0] for c in CASES], ids=[c[0].kind for c in CASES])
def test_an_empty_response_meets_no_constraint(constraint):
    assert not constraint.check("")
    assert not constraint.check("  \n ")


def test_counts():
    assert count_words(" - one, two-three\n- 4 ") == 3  # the lone "-" bullets are no words
    assert count_sentences("First. Second! Third? trailing") == 4
    assert count_sentences("Pi is 3.14 today.") == 1


def test_satisfaction_is_the_fraction_met():
    constraints = [Constraint("lowercase"), Constraint("include", "tea"), Constraint("max_words", "3")]
    assert satisfaction(constraints, " i like tea") == 1.0
    assert satisfaction(constraints, " I like tea") == pytest.approx(2 / 3)
    assert satisfaction(constraints, " I like coffee a lot") == 0.0
    with pytest.raises(ValueError):
        satisfaction([], " anything")


def test_instructions_round_trip_through_parsing():
    constraints = [c[0] for c in CASES] + [Constraint("sentences", "1")]
    text = " ".join(c.instruction() for c in constraints)
    assert parse_instructions(text) == constraints
    assert 'Answer in JSON with the keys "title" and "summary".' in text
    with pytest.raises(ValueError, match="not a constraint instruction"):
        parse_instructions("Write a poem.")


def test_compatibility_rules():
    assert compatible([Constraint("max_words", "5"), Constraint("include", "a"), Constraint("lowercase")])
    assert not compatible([Constraint("max_words", "5"), Constraint("min_words", "2")])  # same group
    assert not compatible([Constraint("json", "a,b"), Constraint("uppercase")])  # keys cannot be capitals
    with pytest.raises(ValueError, match="unknown constraint kind"):
        Constraint("rhyme")
