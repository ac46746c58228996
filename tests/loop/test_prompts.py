"""Each round's share of the training prompts: disjoint chunks, or a seeded draw; checked before any work."""

import json

import pytest

from selm.errors import ConfigError, DataError
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


def test_demonstrations_come_from_the_column_or_the_seeded_task():
    task = get_task("sort")
    prompts = RunPrompts(task.train_prompts(3, 0), ["e"], None, per_round=3, schedule="chunks", seed=5)
    # Drawn per (seed, prompt index): the same on every call (and on resume), a valid demonstration.
    assert [prompts.demonstration(i, task) for i in range(3)] == [prompts.demonstration(i, task) for i in range(3)]
    assert all(isinstance(prompts.demonstration(i, task), str) and prompts.demonstration(i, task) for i in range(3))
    column = RunPrompts(["a", "b"], ["e"], None, 2, "chunks", 0, demonstrations=[" 1", " 2"])
    assert column.demonstration(1, None) == " 2"


def test_a_demonstration_column_is_read_in_prompt_order_and_a_gap_is_named(tmp_path):
    import json

    from selm.config import load_config

    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "demo": f" d{i}"}) + "\n" for i in range(4)))
    config = load_config(RunConfig, None, [f"prompts.train={path}", "prompts.per_round=2", "rounds=2",
                                           "objective=aihf", "demonstrations={field: demo}"])
    prompts = load_run_prompts(config, get_task("sort"))
    assert [prompts.demonstration(i, None) for i in range(4)] == [" d0", " d1", " d2", " d3"]
    path.write_text(json.dumps({"prompt": "q0", "demo": " d0"}) + "\n" + json.dumps({"prompt": "q1"}) + "\n")
    with pytest.raises(ConfigError, match="demonstrations.field: row 2 of .* has no 'demo' value"):
        load_run_prompts(config.model_copy(update={"rounds": 1}), get_task("sort"))


def test_eval_prompts_have_their_own_column_and_repeats_are_counted(tmp_path):
    train, held = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps({"question": q}) + "\n" for q in ["a", "b", "a", "c"]))
    held.write_text("".join(json.dumps({"text": q}) + "\n" for q in ["c", "d"]))
    config = RunConfig(rounds=1, prompts={"per_round": 4, "num_eval": 2, "train": str(train), "eval": str(held),
                                          "field": "question", "eval_field": "text"})
    with pytest.warns(UserWarning) as caught:
        prompts = load_run_prompts(config, None)
    assert prompts.train == ["a", "b", "a", "c"] and prompts.eval == ["c", "d"]
    assert [str(w.message) for w in caught] == ["prompts.train: 1 of 4 prompts repeat an earlier one",
                                                "prompts.eval: 1 of 2 held-out prompts are also training prompts"]
    # A wrong column names the columns there are.
    with pytest.raises(DataError, match=r"row 1: field 'prompt' is missing \(the row's columns: question\)"):
        load_run_prompts(config.model_copy(update={"prompts": config.prompts.model_copy(update={"field": "prompt"})}),
                         None)
