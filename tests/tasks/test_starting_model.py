"""The starting model: built once per settings, cached atomically, reused, deterministic."""

import dataclasses
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import selm.tasks.starting_model as starting_model
from selm.errors import ModelLoadError
from selm.tasks import StartingModelSettings, get_task, starting_model_dir

# Builds in well under a second; the real defaults take ~15–25 s (see the slow test).
TINY = StartingModelSettings(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                             steps=3, batch_size=8, warmup_steps=1, tokenizer_corpus_size=100)


def test_build_then_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task("sort")
    path = task.starting_model(cache_dir=tmp_path, settings=TINY, progress=False)
    assert path == starting_model_dir(task, TINY, tmp_path)
    assert path.parent == tmp_path / "models"
    assert path.name.startswith("sort-") and len(path.name) == len("sort-") + 12
    assert {"config.json", "model.safetensors", "tokenizer.json", "selm_starting_model.json"} <= {
        p.name for p in path.iterdir()}
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]  # no temporary folder left

    manifest = json.loads((path / "selm_starting_model.json").read_text())
    assert manifest["task"] == "sort" and manifest["settings"] == dataclasses.asdict(TINY)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (16, 1)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.chat_template is None
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    # Every digit is one token, so a response is one token per digit.
    assert len(tokenizer(" 2 4 7 9", add_special_tokens=False).input_ids) == 4

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(starting_model, "build_starting_model", must_not_build)
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert get_task("sort").starting_model(cache_dir=tmp_path, settings=TINY) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime


def test_cache_key_and_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task("sort")
    assert starting_model_dir(task, TINY, tmp_path) == starting_model_dir(get_task("sort"), TINY, tmp_path)
    assert starting_model_dir(task, TINY, tmp_path) != starting_model_dir(
        task, dataclasses.replace(TINY, seed=1), tmp_path)
    monkeypatch.setenv("SELM_CACHE_DIR", str(tmp_path / "env"))
    assert starting_model_dir(task, TINY).parent == tmp_path / "env" / "models"
    monkeypatch.delenv("SELM_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert starting_model_dir(task, TINY).parent == tmp_path / "home" / ".cache" / "selm" / "models"


def test_build_is_deterministic(tmp_path: Path) -> None:
    task = get_task("sort")
    first, second = (
        load_file(task.starting_model(cache_dir=tmp_path / name, settings=TINY, progress=False) / "model.safetensors")
        for name in ("a", "b"))
    assert sorted(first) == sorted(second) and len(first) == 12
    assert all(first[name].equal(second[name]) for name in first)


def test_killed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(*args: object, **kwargs: object) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(starting_model, "_train", killed)
    with pytest.raises(KeyboardInterrupt):
        get_task("sort").starting_model(cache_dir=tmp_path, settings=TINY, progress=False)
    assert list((tmp_path / "models").iterdir()) == []


def test_stale_temporary_folders_are_removed(tmp_path: Path) -> None:
    task = get_task("sort")
    final = starting_model_dir(task, TINY, tmp_path)
    stale, fresh = final.parent / f".{final.name}.old", final.parent / f".{final.name}.running"
    stale.mkdir(parents=True)
    fresh.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    task.starting_model(cache_dir=tmp_path, settings=TINY, progress=False)
    assert sorted(p.name for p in final.parent.iterdir()) == sorted([final.name, fresh.name])


def test_concurrent_build_keeps_the_first_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task("sort")
    final = starting_model_dir(task, TINY, tmp_path)
    real_build = starting_model.build_starting_model

    def build_while_another_process_finishes(task, settings, out_dir, progress):  # type: ignore[no-untyped-def]
        manifest = real_build(task, settings, out_dir, progress)
        shutil.copytree(out_dir, final)  # the other process renames its copy into place first
        (final / "marker").write_text("first")
        return manifest

    monkeypatch.setattr(starting_model, "build_starting_model", build_while_another_process_finishes)
    assert task.starting_model(cache_dir=tmp_path, settings=TINY, progress=False) == final
    assert (final / "marker").read_text() == "first"
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_incomplete_folder_is_an_error(tmp_path: Path) -> None:
    task = get_task("sort")
    starting_model_dir(task, TINY, tmp_path).mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="not a complete starting model"):
        task.starting_model(cache_dir=tmp_path, settings=TINY)


@pytest.mark.slow
def test_default_starting_model_is_formatted_but_unaligned(tmp_path: Path) -> None:
    from selm.sampling import HFSampler, SamplingParams

    task = get_task("sort")
    start = time.perf_counter()
    path = task.starting_model(cache_dir=tmp_path)
    assert time.perf_counter() - start < 60
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts = task.eval_prompts(64)
    out = HFSampler(model, tokenizer, progress=False).generate(
        [tokenizer(p).input_ids for p in prompts],
        SamplingParams(n=8, temperature=1.0, max_new_tokens=task.max_new_tokens, seed=1))
    rewards = [r for p, cs in zip(prompts, out) for r in task.gold_reward([p] * 8, [c.text for c in cs])]
    assert 0.4 < statistics.mean(rewards) < 0.55  # measured 0.469
    assert 0.01 < sum(r == 1.0 for r in rewards) / len(rewards) < 0.1  # measured 0.055
