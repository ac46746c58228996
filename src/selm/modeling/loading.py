"""Loading causal LMs and tokenizers from a hub id, a local folder or a ``.gguf`` file (converted
once into a cached folder, see ``selm.modeling.gguf``), safely by default.

Weights load from safetensors only unless ``allow_pickle`` is set; ``trust_remote_code`` is off
unless set. A missing local path or an unreachable hub id is one ``ModelLoadError`` line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from selm.errors import ModelLoadError
from selm.modeling.gguf import ensure_gguf_model, is_gguf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device | str | None = None) -> torch.dtype:
    """``auto`` is float32 on CPU (no fast bf16 there) and bfloat16 on a GPU that supports it."""
    if name == "auto":
        is_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
        if is_cuda and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype '{name}'; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def _looks_local(name_or_path: str) -> bool:
    return name_or_path.startswith((".", "/", "~")) or Path(name_or_path).exists() or name_or_path.count("/") > 1


def _check_source(name_or_path: str, what: str) -> None:
    if _looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise ModelLoadError(f"{what} '{name_or_path}': no such file or folder")


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights(name_or_path: str, allow_pickle: bool = False) -> None:
    """Refuse a local model folder whose only weights are pickles, unless ``allow_pickle``.

    Cheap (looks at file names only), so callers run it before any work starts. Unpickling can
    run arbitrary code, so ``pytorch_model.bin`` & co. load only when the user opts in.

    Raises:
        ModelLoadError: one line naming the folder, the pickle files and the ``allow_pickle`` option.
    """
    path = Path(name_or_path).expanduser()
    if allow_pickle or not path.is_dir():
        return
    if any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and "training_args" not in p.name)
    if pickles:
        raise ModelLoadError(f"model '{name_or_path}': has only pickle weights ({', '.join(pickles[:3])}), which can run "
                             f"code when loaded; convert them to safetensors or set allow_pickle: true")


def load_causal_lm(
    name_or_path: str,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    **kwargs: Any,
) -> torch.nn.Module:
    """Load a causal LM (``AutoModelForCausalLM``) in the given dtype, safetensors-only by default."""
    from transformers import AutoModelForCausalLM

    return _load_pretrained(AutoModelForCausalLM, name_or_path, dtype, trust_remote_code, allow_pickle, **kwargs)


def load_sequence_classifier(
    name_or_path: str,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> torch.nn.Module:
    """Load a reward model (``AutoModelForSequenceClassification``) as ``load_causal_lm`` loads a policy."""
    from transformers import AutoModelForSequenceClassification

    return _load_pretrained(AutoModelForSequenceClassification, name_or_path, dtype, trust_remote_code, allow_pickle)


def _load_pretrained(auto_class: Any, name_or_path: str, dtype: str, trust_remote_code: bool, allow_pickle: bool,
                     **kwargs: Any) -> torch.nn.Module:
    if is_gguf(name_or_path):
        name_or_path = str(ensure_gguf_model(name_or_path))
    _check_source(name_or_path, "model")
    check_weights(name_or_path, allow_pickle)
    try:
        return auto_class.from_pretrained(
            str(Path(name_or_path).expanduser()) if _looks_local(name_or_path) else name_or_path,
            dtype=resolve_dtype(dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        hint = "" if allow_pickle else " (only safetensors weights are loaded unless allow_pickle: true)"
        raise ModelLoadError(f"model '{name_or_path}': {str(exc).splitlines()[0]}{hint}") from None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, padding_side: str = "right",
                   chat_template: str | None = None) -> Any:
    """Load a tokenizer; a missing pad token falls back to EOS (the usual choice for causal LMs).

    ``chat_template``: a Jinja chat template, or the path of a file holding one, to use instead of
    the tokenizer's own (a base model has none); saved with the tokenizer.
    """
    from transformers import AutoTokenizer

    if is_gguf(name_or_path):
        name_or_path = str(ensure_gguf_model(name_or_path))
    _check_source(name_or_path, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(
            str(Path(name_or_path).expanduser()) if _looks_local(name_or_path) else name_or_path,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"tokenizer '{name_or_path}': {str(exc).splitlines()[0]}") from None
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ModelLoadError(f"tokenizer '{name_or_path}' has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    if chat_template is not None:
        template = Path(chat_template).expanduser()
        tok.chat_template = template.read_text(encoding="utf-8") if template.is_file() else chat_template
    return tok


def model_fingerprint(model: torch.nn.Module, exclude: str | None = None) -> str:
    """sha256 over every parameter's name, shape, dtype and bytes (adapters included).

    Used to key caches (reference log-probs) and manifests: any change of weights changes it. A
    tensor that shares its memory with an earlier one (a tied output layer) is recorded as that
    alias rather than hashed twice: Gemma-3's tied 262k embedding is 671 MB of its 1.07 GB.

    Args:
        exclude: skip tensors whose name contains this substring (``"lora_"``: the base weights
            only, i.e. the reference that a LoRA policy becomes with its adapters disabled).
    """
    digest = hashlib.sha256()
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in sorted(model.state_dict().items()):
        if exclude is not None and exclude in name:
            continue
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        view = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if tensor.data_ptr() and view in seen:
            digest.update(f"={seen[view]}".encode())
            continue
        seen[view] = name
        data = tensor.detach().cpu().contiguous()
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        digest.update(data.numpy().data)  # the buffer itself: no 671 MB copy of a 262k embedding
    return digest.hexdigest()
