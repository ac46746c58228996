"""The typed artifact rows: the same JSON bytes as the hand-built dicts they replace, and back."""

import json

import pytest

from selm.artifacts import BestOfNRow, Candidate, EvalRow, PairRow, SampleRow, ScoreRow, read_rows, write_rows


def _line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


SAMPLED = {"text": " 1 2", "token_ids": [5, 6, 2], "logprob": -1.25, "num_tokens": 3, "finished": True}
FROM_DATASET = {"text": " 9 9", "token_ids": [9, 9], "logprob": None, "num_tokens": 2, "finished": True,
                "source": "dataset"}
SAMPLE = {"prompt_index": 0, "prompt": "sort: 2 1", "prompt_ids": [7, 8], "candidates": [SAMPLED, FROM_DATASET],
          "explore": SAMPLED}
PAIR = {"prompt_index": 3, "prompt": [{"role": "user", "content": "é"}], "prompt_ids": [1], "chosen": "a",
        "rejected": "b", "chosen_ids": [4], "rejected_ids": [5], "explore": None, "explore_ids": None,
        "chosen_score": 1.0, "rejected_score": 0.5, "margin": 0.5, "label_probs": 0.62, "online_ids": [[4], [5]]}
EVAL = {"prompt_index": 1, "sample_index": 0, "prompt": "p", "response": "r", "num_tokens": 2, "finished": False,
        "reward": None, "gold_reward": 0.5, "logprob": -2.0, "initial_logprob": -2.5, "token_ids": [3, 4]}
PAIRWISE_EVAL = {**EVAL, "win_vs_initial": 1.0, "win_vs_previous": 0.5}
BEST = {"prompt_index": 1, "response": "r", "num_tokens": 2, "n": 4, "reward": 0.75, "gold_reward": None}


@pytest.mark.parametrize(("row_type", "row"), [
    (SampleRow, SAMPLE), (SampleRow, {**SAMPLE, "explore": None}), (ScoreRow, {"prompt_index": 2, "scores": [0.5, 1.0]}),
    (PairRow, PAIR), (EvalRow, EVAL), (EvalRow, PAIRWISE_EVAL), (BestOfNRow, BEST), (Candidate, FROM_DATASET),
])
def test_rows_write_the_bytes_of_the_dicts_they_replace(tmp_path, row_type, row):
    path = tmp_path / "rows.jsonl"
    typed = row_type.from_json(row)
    write_rows(path, [typed, typed])
    assert path.read_text(encoding="utf-8") == _line(row) * 2  # same keys, same order, same values
    assert read_rows(path, row_type) == [typed, typed]


def test_optional_keys_and_per_pair_values():
    assert "source" not in Candidate.from_json(SAMPLED).to_json() and Candidate.from_json(SAMPLED).sampled
    assert not Candidate.from_json(FROM_DATASET).sampled
    eval_row = EvalRow.from_json(EVAL)
    assert eval_row.win_vs_initial is None and "win_vs_initial" not in eval_row.to_json()
    pair = PairRow.from_json(PAIR)
    assert pair.values == {"label_probs": 0.62, "online_ids": [[4], [5]]} and pair.margin == 0.5


def test_unknown_keys_are_ignored_and_missing_keys_raise():
    assert EvalRow.from_json({**EVAL, "from_a_newer_selm": 1}) == EvalRow.from_json(EVAL)
    with pytest.raises(KeyError, match="initial_logprob"):
        EvalRow.from_json({k: v for k, v in EVAL.items() if k != "initial_logprob"})
