"""What a run is assembled from, before any round: objective, task, π0's folder, tokenizer, judges, prompts."""

import contextlib
from types import SimpleNamespace

import pytest

from selm.errors import DataError
from selm.loop.config import RunConfig
from selm.loop.setup import assemble_run

ACCELERATOR = SimpleNamespace(main_process_first=contextlib.nullcontext)


def test_quickstart_parts():
    parts = assemble_run(RunConfig(prompts={"per_round": 4, "num_eval": 3}), ACCELERATOR, progress=False)
    assert parts.objective.name == "selm" and parts.task.name == "sort"
    assert parts.eval_judge is parts.judge and parts.judge.kind == "gold"
    assert len(parts.prompts.train) == 3 * 4 and len(parts.prompts.eval) == 3
    assert parts.tokenizer.pad_token_id is not None and parts.model_source


def test_a_separate_eval_judge_and_bad_prompts_fail_before_any_round(tmp_path):
    parts = assemble_run(RunConfig(eval={"judge": {"kind": "gold", "task": "sort"}}), ACCELERATOR, progress=False)
    assert parts.eval_judge is not parts.judge
    empty = tmp_path / "eval.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="eval.jsonl"):
        assemble_run(RunConfig(prompts={"eval": str(empty)}), ACCELERATOR, progress=False)
