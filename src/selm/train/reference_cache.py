"""Reference log-probs computed once, in a no-grad pass, and cached on disk.

The cache key is sha256(reference fingerprint, chunking-independent token ids of every pair), so a
cached file is reused across runs on the same data and reference, and a change of either (a new
round's reference, an edited row, another tokenizer) computes afresh (trl#2423, trl#3985).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from selm.cache import cache_root
from selm.data import TokenizedPair, collate_preference_batch
from selm.engine import ReferencePolicy, sequence_stats
from selm.engine.packing import PackingLayout

ROLES = ("chosen", "rejected", "explore")


def default_cache_dir() -> Path:
    """``$SELM_CACHE_DIR/reference_logps`` (default ``~/.cache/selm/reference_logps``)."""
    return cache_root() / "reference_logps"


def cache_key(reference_fingerprint: str, pairs: Sequence[TokenizedPair], include_explore: bool) -> str:
    """sha256 over the reference fingerprint and every pair's token ids, in order."""
    digest = hashlib.sha256(reference_fingerprint.encode())
    digest.update(b"explore" if include_explore else b"")
    for pair in pairs:
        for ids in (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids,
                    pair.explore_ids if include_explore else None):
            digest.update(b"|" + (b"-" if ids is None else ",".join(map(str, ids)).encode()))
    return digest.hexdigest()


@torch.no_grad()
def compute_reference_logps(
    reference: ReferencePolicy,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    batch_size: int = 16,
    chunk_size: int = 1024,
    include_explore: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = True,
    packing: PackingLayout | None = None,
) -> dict[str, torch.Tensor]:
    """Summed reference log-probs of every pair's responses.

    ``packing`` (None, ``"rows"`` or ``"one_row"``) packs each batch of ``batch_size`` pairs
    without padding, as the trainer does when ``padding_free`` holds; the values are the padded
    ones up to float rounding.

    Returns:
        ``{"chosen": [P], "rejected": [P], "explore": [P] (if include_explore)}`` float32, in the
        order of ``pairs``.
    """
    out: dict[str, list[torch.Tensor]] = {role: [] for role in ROLES[: 3 if include_explore else 2]}
    was_training = reference.model.training
    reference.model.eval()
    try:
        with reference.active() as model:
            bar = tqdm(range(0, len(pairs), batch_size), desc="reference log-probs", unit="batch",
                       disable=not progress, leave=False)
            for start in bar:
                chunk = pairs[start:start + batch_size]
                batch = collate_preference_batch(chunk, pad_token_id, include_explore=include_explore,
                                                 packing=packing).to(device)
                logps = sequence_stats(model, batch, chunk_size=chunk_size).logps.float().cpu()
                for i, role in enumerate(out):
                    out[role].append(logps[i * len(chunk):(i + 1) * len(chunk)])
    finally:
        reference.model.train(was_training)
    return {role: torch.cat(parts) if parts else torch.zeros(0) for role, parts in out.items()}


def cached_reference_logps(
    reference: ReferencePolicy,
    reference_fingerprint: str,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    cache_dir: Path | None = None,
    **kwargs,
) -> tuple[dict[str, torch.Tensor], bool]:
    """``compute_reference_logps`` through the on-disk cache. Returns (log-probs, cache_hit)."""
    include_explore = bool(kwargs.get("include_explore", False))
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"{cache_key(reference_fingerprint, pairs, include_explore)}.safetensors"
    if path.is_file():
        try:
            return load_file(path), True
        except Exception:  # a corrupt cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    logps = compute_reference_logps(reference, pairs, pad_token_id, **kwargs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in logps.items()}, str(tmp))
    os.replace(tmp, path)
    return logps, False
