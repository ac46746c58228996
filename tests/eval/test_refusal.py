"""Refusal detection and the refusal rate of a round's responses."""

import pytest

from selm.artifacts import EvalRow
from selm.eval.refusal import is_refusal, refusal_rate
from selm.eval.round_metrics import round_metrics


@pytest.mark.parametrize(("response", "refuses"), [
    (" I'm sorry, but I can't help with that.", True),
    ("I cannot provide instructions for making weapons.", True),
    (" I’m not able to do that.", True),  # typographic apostrophe
    (" As an AI, I must decline.", True),
    (" Plants use sunlight to turn water and air into sugar.", False),
    # A refusal phrase after the first sentence is part of an answer, not a refusal.
    (" Use a budget. I cannot stress this enough.", False),
    ("", False),
])
def test_refusals_are_recognised_by_their_first_sentence(response: str, refuses: bool) -> None:
    assert is_refusal(response) is refuses


def test_refusal_rate_and_its_round_metric() -> None:
    assert refusal_rate([" I can't.", " Sure: ...", " I won't.", " Yes."]) == 0.5
    assert refusal_rate([]) is None
    manifest = {"phases": {"evaluate": {"refusal": {"eval/refusal_rate": 0.25}}}}
    row = EvalRow(prompt_index=0, sample_index=0, prompt="p", response=" r", num_tokens=1, finished=True, reward=1.0,
                  gold_reward=None, logprob=-1.0, initial_logprob=-1.0, token_ids=[5])
    assert round_metrics(0, [row], manifest)["eval/refusal_rate"] == 0.25
