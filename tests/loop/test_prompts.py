"""Each round's share of the training prompts: disjoint chunks, or a seeded draw; checked before any work."""

import pytest

from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.loop.prompts import RunPrompts, load_run_prompts
from selm.tasks import get_task


def test_chunks_are_consecutive_and_disjoint():
    prompts = RunPrompts([f"p{i}" for i in range(12)], ["e"], None, per_round=4, schedule="chunks", seed=0)
    assert [prompts.indices(k) for k in (1, 2, 3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert prompts.for_round(2) == ["p4", "p5", "p6", "p7"]


def test_resample_draws_without_repeats_and_depends_only_on_seed_and_round():
    train = [f"p{i}" for i in range(20)]
    a = RunPrompts(train, ["e"], None, per_round=8, schedule="resample", seed=3)
    b = RunPrompts(list(train), ["e"], None, per_round=8, schedule="resample", seed=3)
    assert a.indices(2) == b.indices(2) and len(set(a.indices(2))) == 8
    assert a.indices(1) != a.indices(2)
    assert a.indices(1) != RunPrompts(train, ["e"], None, 8, "resample", seed=4).indices(1)


def test_task_prompts_fill_every_round_and_too_few_prompts_are_refused(tmp_path):
    config = RunConfig(rounds=2, prompts={"per_round": 5, "num_eval": 3})
    prompts = load_run_prompts(config, get_task("sort"))
    assert len(prompts.train) == 10 and len(prompts.eval) == 3 and prompts.dataset_responses is None
    assert not set(prompts.train) & set(prompts.eval)
    few = tmp_path / "few.jsonl"
    few.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    with pytest.raises(ConfigError, match=r"prompts.train: 2 prompts, but 2 rounds × prompts.per_round 5 need 10"):
        load_run_prompts(RunConfig(rounds=2, prompts={"per_round": 5, "train": str(few)}), get_task("sort"))
