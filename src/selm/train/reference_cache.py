"""Reference log-probs computed once, in a no-grad pass, and cached on disk.

The cache key is sha256(reference fingerprint, chunking-independent token ids of every pair), so a
cached file is reused across runs on the same data and reference, and a change of either (a new
round's reference, an edited row, another tokenizer) computes afresh (trl#2423, trl#3985). Under
several processes each scores its own share of the pairs, once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from selm.cache import cache_root
from selm.data import TokenizedPair
from selm.data.collate import RowLayout, preference_sequences
from selm.distributed import gather_in_order, map_sharded
from selm.engine import FeatureProbe, ReferencePolicy, score_sequences, score_with_features
from selm.engine.packing import PackingLayout
from selm.io import atomic_write_bytes


def default_cache_dir() -> Path:
    """``$SELM_CACHE_DIR/reference_logps`` (default ``~/.cache/selm/reference_logps``)."""
    return cache_root() / "reference_logps"


# Key prefix of the pooled features of a role (FPO) beside the roles' log-probs.
FEATURES_PREFIX = "features."


def cache_key(reference_fingerprint: str, pairs: Sequence[TokenizedPair], include_explore: bool,
              features: FeatureProbe | None = None) -> str:
    """sha256 over the reference fingerprint, the feature probe (autoencoder and layer) if any,
    and every pair's token ids, in order."""
    digest = hashlib.sha256(reference_fingerprint.encode())
    digest.update(b"explore" if include_explore else b"")
    digest.update(f"features:{features.key}".encode() if features is not None else b"")
    for pair in pairs:
        for ids in (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids,
                    pair.explore_ids if include_explore else None):
            digest.update(b"|" + (b"-" if ids is None else ",".join(map(str, ids)).encode()))
    return digest.hexdigest()


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
    features: FeatureProbe | None = None,
) -> dict[str, torch.Tensor]:
    """Summed reference log-probs of every pair's responses (and their pooled features), no grad, in eval mode.

    Each forward holds the rows the trainer's batch of ``batch_size`` pairs holds (their chosen,
    rejected[, explore] responses), so the values are those a live reference would give.
    ``packing`` (None, ``"rows"`` or ``"one_row"``) packs each forward without padding, as the
    trainer does when ``padding_free`` holds; the values are the padded ones up to float rounding.
    ``features`` also pools a sparse autoencoder's codes over each response in the same forwards
    (FPO's c̄_ref, see :func:`selm.engine.sequence_stats`).

    Returns:
        ``{"chosen": [P], "rejected": [P], "explore": [P] (if include_explore)}`` float32 nats on
        the CPU, in the order of ``pairs``; with ``features`` also ``"features.<role>"``: [P, F]
        (see :func:`split_features`).
    """
    sequences: list[tuple[list[int], list[int]]] = []
    layouts: list[RowLayout] = []
    for start in range(0, len(pairs), batch_size):
        chunk_sequences, layout = preference_sequences(pairs[start:start + batch_size], include_explore)
        sequences += chunk_sequences
        layouts.append(layout)
    # Every chunk but the last has the first one's rows: one forward per chunk.
    rows_per_forward = layouts[0].num_rows if layouts else 1
    options = {"batch_size": rows_per_forward, "chunk_size": chunk_size, "device": device, "packing": packing,
               "progress": progress, "desc": "reference log-probs"}
    values = {"": score_sequences(reference, sequences, pad_token_id, **options)} if features is None else dict(
        zip(("", FEATURES_PREFIX), score_with_features(reference, sequences, pad_token_id, features, **options)))
    out: dict[str, torch.Tensor] = {}
    # Every role, also when there are no pairs.
    for role in preference_sequences([], include_explore)[1].roles:
        for prefix, scores in values.items():
            parts, offset = [], 0
            for layout in layouts:
                rows = layout.rows(role)
                parts.append(scores[offset + rows.start:offset + rows.stop])
                offset += layout.num_rows
            out[prefix + role] = torch.cat(parts) if parts else scores[:0]
    return out


def split_features(values: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``compute_reference_logps``'s output as (role -> log-probs [P], role -> pooled features [P, F])."""
    logps = {key: v for key, v in values.items() if not key.startswith(FEATURES_PREFIX)}
    features = {key.removeprefix(FEATURES_PREFIX): v for key, v in values.items() if key.startswith(FEATURES_PREFIX)}
    return logps, features


def cached_reference_logps(
    reference: ReferencePolicy,
    reference_fingerprint: str,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    cache_dir: Path | None = None,
    accelerator: Any = None,
    **kwargs,
) -> tuple[dict[str, torch.Tensor], bool]:
    """``compute_reference_logps`` through the on-disk cache (keyed by its ``features`` too).
    Returns (its output, cache_hit).

    With a multi-process ``accelerator`` the pairs are split into contiguous equal shards, each
    process scores its own (a sharded reference runs its forwards in lockstep), every process gets
    all the log-probs, and the main process writes the cache. ``kwargs`` go to
    ``compute_reference_logps``.
    """
    include_explore = bool(kwargs.get("include_explore", False))
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"{cache_key(reference_fingerprint, pairs, include_explore, kwargs.get('features'))}.safetensors"
    logps = _load(path)
    if all(gather_in_order(accelerator, [logps is not None]) if accelerator is not None else [logps is not None]):
        return logps, True
    if accelerator is None:
        logps = compute_reference_logps(reference, pairs, pad_token_id, **kwargs)
    else:
        empty = compute_reference_logps(reference, [], pad_token_id, **{**kwargs, "progress": False})

        def score(shard: list[TokenizedPair]) -> list[dict[str, torch.Tensor]]:
            out = compute_reference_logps(reference, shard, pad_token_id, **kwargs)
            return [{key: out[key][i] for key in empty} for i in range(len(shard))]

        rows = map_sharded(accelerator, list(pairs), score, equal_shards=True)
        logps = {key: torch.stack([row[key] for row in rows]) if rows else value for key, value in empty.items()}
    if accelerator is None or accelerator.is_main_process:
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in logps.items()}))
    return logps, False


def _load(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached log-probs at ``path``; None when absent or unreadable (a corrupt file is removed)."""
    if not path.is_file():
        return None
    try:
        return load_file(path)
    except Exception:  # a corrupt cache file is recomputed, never trusted
        path.unlink(missing_ok=True)
        return None
