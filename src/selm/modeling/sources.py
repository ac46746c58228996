"""Where a model's files come from: a hub id, a local folder, a GGUF file (``*.gguf``) or a PyPI
package shipping one (``pypi:<package>``). Built-in models (``builtin:<task>``) are resolved one
layer up, by :func:`selm.tasks.resolve_model_source`, since building them needs the task.
"""

from __future__ import annotations

from selm.modeling.gguf import (
    PYPI_PREFIX,
    assemble_pypi_model,
    ensure_gguf_model,
    is_gguf,
)


def resolve_model_path(name_or_path: str) -> str:
    """Return a hub id or local folder for ``name_or_path``, converting a GGUF file (once, cached)
    or assembling a PyPI package's GGUF first if asked."""
    if name_or_path.startswith(PYPI_PREFIX):
        return str(ensure_gguf_model(assemble_pypi_model(name_or_path[len(PYPI_PREFIX):])))
    if is_gguf(name_or_path):
        return str(ensure_gguf_model(name_or_path))
    return name_or_path
