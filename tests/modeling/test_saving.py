"""save_model_atomically: model and tokenizer files land in the output folder beside what is there,
and a later load gives back the same weights."""

from __future__ import annotations

from pathlib import Path

import torch

from selm.modeling.loading import load_causal_lm, load_tokenizer
from selm.modeling.saving import save_model_atomically
from selm.modeling.tiny import build_tiny_model, build_tokenizer


def test_saves_a_loadable_model_and_tokenizer_beside_the_other_outputs(tmp_path: Path) -> None:
    (tmp_path / "train_log.jsonl").write_text("{}\n")
    (tmp_path / ".final.tmp").mkdir()  # left by a killed save: replaced, not merged
    (tmp_path / ".final.tmp" / "model.safetensors").write_text("half")
    model, tokenizer = build_tiny_model(vocab_size=40, seed=2), build_tokenizer(["a b c"], vocab_size=300)
    save_model_atomically(model, tokenizer, tmp_path)

    names = {p.name for p in tmp_path.iterdir()}
    assert {"train_log.jsonl", "model.safetensors", "config.json", "tokenizer.json"} <= names
    assert ".final.tmp" not in names
    loaded = load_causal_lm(str(tmp_path), dtype="float32")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_tokenizer(str(tmp_path)).get_vocab() == tokenizer.get_vocab()


def test_saving_again_overwrites_the_model(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(["a b c"], vocab_size=300)
    save_model_atomically(build_tiny_model(vocab_size=40, seed=2), tokenizer, tmp_path)
    second = build_tiny_model(vocab_size=40, seed=3)
    save_model_atomically(second, tokenizer, tmp_path)
    loaded = load_causal_lm(str(tmp_path), dtype="float32")
    assert torch.equal(loaded.model.embed_tokens.weight, second.model.embed_tokens.weight)
