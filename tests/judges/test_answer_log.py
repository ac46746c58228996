"""A judge's answers kept on disk in batches, atomically, and read back (``selm.judges.answer_log``)."""

from __future__ import annotations

import json

from selm.judges.answer_log import AnswerLog


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answers_are_written_in_batches_and_read_back(tmp_path):
    path = tmp_path / "judge_answers.0.jsonl"
    log = AnswerLog(path, batch=2, interval_s=3600)
    log.put("k1", 1.0, "A")
    assert not path.exists()  # not a full batch yet
    log.put("k2", 0.0, "Answer: B")
    assert [row["key"] for row in lines(path)] == ["k1", "k2"]
    log.put("k3", 7.0, "7")
    assert len(lines(path)) == 2  # a kill now loses at most this batch
    log.close()
    assert lines(path)[-1] == {"key": "k3", "value": 7.0, "answer": "7"}
    assert not [p for p in tmp_path.iterdir() if p != path]  # written by rename: no temporary left

    again = AnswerLog(path)
    assert len(again) == 3 and again.get("k2") == 0.0 and again.get("k4") is None


def test_a_slow_trickle_is_written_after_the_interval(tmp_path):
    path = tmp_path / "answers.jsonl"
    log = AnswerLog(path, batch=100, interval_s=0.0)
    log.put("k1", 3.0, "3")
    assert len(lines(path)) == 1
