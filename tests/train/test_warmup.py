"""SFT warm-up on task demonstrations: trains, freezes the embedding, caches by settings."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from selm.loop.config import RunConfig
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.tasks import get_task
from selm.train import warmup
from selm.train.warmup import WarmupConfig, ensure_warmup


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny untrained Llama with a tokenizer fitted to ifeval prompts and demonstrations."""
    task, rng = get_task("ifeval"), random.Random(0)
    prompts = task.train_prompts(200, seed=0)
    tokenizer = build_tokenizer([p + task.demonstration(p, rng) for p in prompts], vocab_size=400,
                                chat_template=None)
    model = build_tiny_model(len(tokenizer), seed=0, pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("source")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_warmup_lowers_the_loss_and_keeps_the_embedding(source, tmp_path):
    settings = WarmupConfig(steps=12, batch_size=8, learning_rate=3e-3)
    folder = ensure_warmup(get_task("ifeval"), str(source), settings, cache_dir=tmp_path, progress=False)
    manifest = json.loads((folder / warmup.MANIFEST).read_text())
    assert manifest["final_loss"] < manifest["first_loss"]
    before, after = load_file(source / "model.safetensors"), load_file(folder / "model.safetensors")
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])
    assert (folder / "tokenizer.json").is_file()


def test_warmup_is_cached_and_keyed_by_settings(source, tmp_path, monkeypatch):
    task = get_task("ifeval")
    settings = WarmupConfig(steps=1, batch_size=2)
    first = ensure_warmup(task, str(source), settings, cache_dir=tmp_path, progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(warmup, "build_warmup", fail)
    assert ensure_warmup(task, str(source), settings, cache_dir=tmp_path, progress=False) == first
    assert warmup.warmup_dir(task, str(source), WarmupConfig(steps=2, batch_size=2), tmp_path) != first


def test_a_cut_warmup_leaves_nothing_behind(source, tmp_path, monkeypatch):
    def cut(task, src, settings, out_dir, *args, **kwargs):
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(warmup, "build_warmup", cut)
    with pytest.raises(KeyboardInterrupt):
        ensure_warmup(get_task("ifeval"), str(source), WarmupConfig(steps=1), cache_dir=tmp_path, progress=False)
    assert list((tmp_path / "models").iterdir()) == []


def test_warmup_needs_a_task():
    with pytest.raises(ValueError, match="warmup_sft needs a built-in task"):
        RunConfig(task=None, prompts={"train": "a.jsonl", "eval": "b.jsonl"}, warmup_sft={"steps": 2})
