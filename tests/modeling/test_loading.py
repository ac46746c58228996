"""Loading models and tokenizers: the dtype, safetensors only unless opted in, one clear line for a
missing source, a pad token always, and a fingerprint that changes with any weight."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selm.errors import ModelLoadError
from selm.modeling.loading import check_weights, load_causal_lm, load_tokenizer, model_fingerprint, resolve_dtype
from selm.modeling.tiny import EOS, build_tiny_model, build_tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_model(vocab_size=40, seed=1).save_pretrained(folder, safe_serialization=True)
    build_tokenizer(["some words for the tokenizer"], vocab_size=300).save_pretrained(folder)
    return folder


def test_resolve_dtype() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16 and resolve_dtype("float16") == torch.float16
    with pytest.raises(ModelLoadError, match="unknown dtype 'float8'; use one of auto, float32, bfloat16, float16"):
        resolve_dtype("float8")


def test_a_saved_model_loads_with_the_same_weights_in_the_asked_dtype(saved: Path) -> None:
    on_disk = load_file(saved / "model.safetensors")
    model = load_causal_lm(str(saved), dtype="float32")
    for name, tensor in model.state_dict().items():
        if name in on_disk:
            assert torch.equal(tensor, on_disk[name]), name
    assert {p.dtype for p in load_causal_lm(str(saved), dtype="bfloat16").parameters()} == {torch.bfloat16}


def test_a_missing_local_source_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"^model '{tmp_path}/nope': no such file or folder$"):
        load_causal_lm(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=f"^tokenizer '{tmp_path}/nope': no such file or folder$"):
        load_tokenizer(str(tmp_path / "nope"))


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    (tmp_path / "training_args.bin").write_bytes(b"pickle")  # not weights: never named
    with pytest.raises(ModelLoadError, match=r"has only pickle weights \(pytorch_model.bin\), which can run code "
                                             r"when loaded; convert them to safetensors or set allow_pickle: true"):
        check_weights(str(tmp_path))
    check_weights(str(tmp_path), allow_pickle=True)
    (tmp_path / "model.safetensors").write_bytes(b"")
    check_weights(str(tmp_path))  # safetensors present: they are what loads
    check_weights("org/hub-model")  # not a local folder: the hub loader is told safetensors only


def test_a_tokenizer_without_a_pad_token_pads_with_eos(saved: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(saved), padding_side="left")
    assert tok.pad_token == "<pad>" and tok.padding_side == "left"
    no_pad = build_tokenizer(["words"], vocab_size=300)
    no_pad.pad_token = None
    no_pad.save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path))
    assert tok.pad_token == EOS and tok.pad_token_id == tok.eos_token_id and tok.padding_side == "right"


def test_fingerprint_changes_with_any_weight_and_can_skip_adapters() -> None:
    a, b = build_tiny_model(vocab_size=40, seed=1), build_tiny_model(vocab_size=40, seed=1)
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.model.layers[1].mlp.down_proj.weight[3, 4] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(a.to(torch.bfloat16))  # the dtype is part of it

    class WithAdapter(torch.nn.Module):
        def __init__(self, base: torch.nn.Module, value: float):
            super().__init__()
            self.base = base
            self.lora_A = torch.nn.Parameter(torch.full((2, 2), value))

    c = build_tiny_model(vocab_size=40, seed=1)
    x, y = WithAdapter(c, 0.0), WithAdapter(c, 1.0)
    assert model_fingerprint(x) != model_fingerprint(y)
    assert model_fingerprint(x, exclude="lora_") == model_fingerprint(y, exclude="lora_")


def test_an_unreachable_hub_id_fails_at_once_naming_the_key(monkeypatch):
    """No retries for a model that cannot be downloaded: offline (HF_HUB_OFFLINE) or no route to
    the hub (a closed local port stands in for it), one error naming the config key."""
    import socket
    import time

    from selm.errors import ModelLoadError
    from selm.modeling.sources import resolve_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="tokenizer_name_or_path: 'no-org/no-model' .*HF_HUB_OFFLINE is set"):
        resolve_model_path("no-org/no-model", "tokenizer_name_or_path")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: a connect is refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match=f"model_name_or_path: 'no-org/no-model' .*127.0.0.1:{port} cannot be reached"):
        resolve_model_path("no-org/no-model")
    assert time.monotonic() - start < 3.5  # one connect attempt, bounded by its 3 s timeout
    # Local paths, GGUF files and PyPI packages are not hub ids.
    assert resolve_model_path("./missing-folder") == "./missing-folder"


def test_a_recipes_chat_template_replaces_the_tokenizers(tmp_path):
    """`chat_template:` in a recipe, as text or as a file, is what conversational data is rendered with."""
    from selm.data.tokenize import tokenize_prompt
    from selm.modeling.loading import load_tokenizer
    from selm.tasks.sources import resolve_model_source

    source = resolve_model_source("builtin:sort")
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    file = tmp_path / "chat.jinja"
    file.write_text(template)
    for given in (template, str(file)):
        tok = load_tokenizer(source, chat_template=given)
        assert tok.chat_template == template
        rendered = tok.decode(tokenize_prompt(tok, [{"role": "user", "content": "3 1 2"}]), skip_special_tokens=True)
        assert "[user] 3 1 2" in rendered


def test_fingerprint_hashes_a_tied_weight_once_but_tells_tied_from_untied() -> None:
    tied = build_tiny_model(vocab_size=40, seed=1, tie_word_embeddings=True)
    untied = build_tiny_model(vocab_size=40, seed=1, tie_word_embeddings=False)
    with torch.no_grad():
        untied.lm_head.weight.copy_(tied.lm_head.weight)
        untied.model.embed_tokens.weight.copy_(tied.model.embed_tokens.weight)
    assert model_fingerprint(tied) == model_fingerprint(build_tiny_model(vocab_size=40, seed=1, tie_word_embeddings=True))
    assert model_fingerprint(tied) != model_fingerprint(untied)  # equal values, but one tensor against two
    with torch.no_grad():
        tied.lm_head.weight[0, 0] += 1e-6  # changes the embedding too
    assert model_fingerprint(tied) != model_fingerprint(build_tiny_model(vocab_size=40, seed=1, tie_word_embeddings=True))
