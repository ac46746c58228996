"""FPO's sparse autoencoder for a run: loaded from a folder, or trained on the policy's hidden states and cached.

Training follows Gao et al. 2024 (https://arxiv.org/abs/2406.04093) in its plain form: tied
initialisation (encoder = decoder transposed), ``b_dec`` started at the data's mean, Adam on the
reconstruction MSE, decoder rows renormalised after every step. Their auxiliary AuxK loss, which
revives latents that stopped firing over millions of tokens, is left out: the autoencoders here are
small and trained for a short while, the tied initialisation already keeps most latents alive (their
Fig. 14), and FPO reads only the features a response activates most, where a dead latent never is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from selm.cache import cache_root
from selm.engine import FeatureProbe, collate_sequences, decoder_states, hidden_layers, unwrap_causal_lm
from selm.errors import ConfigError
from selm.io import publish_dir
from selm.modeling.loading import model_fingerprint
from selm.modeling.sae import CONFIG_FILE, TopKSparseAutoencoder, load_sparse_autoencoder, save_sparse_autoencoder
from selm.progress import progress_bar
from selm.train.config import SparseAutoencoderConfig

# Part of every cache key: a change of the training procedure trains afresh.
TRAINING_VERSION = 1
# Sequences per forward while collecting hidden states.
COLLECT_BATCH = 16


def default_cache_dir() -> Path:
    """``$SELM_CACHE_DIR/sae`` (default ``~/.cache/selm/sae``)."""
    return cache_root() / "sae"


@torch.no_grad()
def collect_hidden_states(model: torch.nn.Module, sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
                          pad_token_id: int, layer: int, max_tokens: int, device: torch.device | str,
                          progress: bool = False) -> torch.Tensor:
    """``hidden_states[layer]`` at every real position of the (prompt, response) ``sequences``, in
    order, up to ``max_tokens`` of them, in eval mode (restored afterwards).

    Returns:
        [P, H] float32 on ``device``, P = min(max_tokens, total tokens).
    """
    was_training = model.training
    model.eval()
    kept: list[torch.Tensor] = []
    total = 0
    try:
        for start in progress_bar(range(0, len(sequences), COLLECT_BATCH), desc="autoencoder data", unit="batch",
                                  disable=not progress, leave=False):
            batch = collate_sequences(list(sequences[start:start + COLLECT_BATCH]), pad_token_id).to(device)
            _, states = decoder_states(model, batch, layer)
            states = states[batch.attention_mask.bool()].float()[:max_tokens - total]
            kept.append(states)
            total += states.shape[0]
            if total >= max_tokens:
                break
    finally:
        model.train(was_training)
    if not kept:
        raise ConfigError("sae: no training sequences to train the sparse autoencoder on")
    return torch.cat(kept)


def train_sparse_autoencoder(states: torch.Tensor, width: int, k: int, *, steps: int, batch_size: int,
                             learning_rate: float, seed: int = 0,
                             progress: bool = False) -> tuple[TopKSparseAutoencoder, dict[str, float]]:
    """A top-k autoencoder fitted to ``states`` by Adam on the reconstruction MSE.

    Args:
        states: [P, d] hidden states (the training set; batches are drawn from it with replacement).
        width, k: F and the code's non-zeros.
        steps, batch_size, learning_rate, seed: the optimisation.

    Returns:
        (the autoencoder on ``states``' device in float32, metrics): ``mse`` (mean squared error per
        element on all of ``states``, squared activation units) and ``fvu`` (that error over the
        states' variance: 0 perfect, 1 no better than their mean).
    """
    states = states.float()
    sae = TopKSparseAutoencoder(states.shape[-1], width, k, seed=seed).to(states.device)
    with torch.no_grad():
        sae.b_dec.copy_(states.mean(0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    bar = progress_bar(range(steps), desc="sparse autoencoder", unit="step", disable=not progress, leave=False)
    for _ in bar:
        x = states[torch.randint(states.shape[0], (batch_size,), generator=generator).to(states.device)]
        loss = (sae(x) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sae.normalize_decoder()
        bar.set_postfix(mse=f"{loss.item():.4g}", refresh=False)
    sae.requires_grad_(False)
    mse = reconstruction_mse(sae, states)
    variance = float((states - states.mean(0)).pow(2).mean())
    return sae, {"mse": mse, "fvu": mse / variance if variance > 0 else 0.0}


@torch.no_grad()
def reconstruction_mse(sae: TopKSparseAutoencoder, states: torch.Tensor, rows: int = 4096) -> float:
    """Mean squared error per element of ``sae``'s reconstruction of ``states`` [P, d], squared activation units."""
    total = sum(float((sae(x) - x).pow(2).sum()) for x in states.float().split(rows))
    return total / max(states.numel(), 1)


def cache_key(fingerprint: str, layer: int, width: int, config: SparseAutoencoderConfig) -> str:
    """sha256 over the model's fingerprint, the layer, the width and the training keys of ``config``."""
    spec = {"version": TRAINING_VERSION, "model": fingerprint, "layer": layer, "width": width,
            **config.model_dump(include={"k", "steps", "batch_size", "learning_rate", "max_tokens", "seed"})}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def feature_probe(config: SparseAutoencoderConfig | None, model: torch.nn.Module,
                  sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad_token_id: int, *,
                  device: torch.device | str, cache_dir: Path | None = None,
                  progress: bool = False) -> tuple[FeatureProbe, bool]:
    """The autoencoder FPO reads ``model``'s features with, frozen, on ``device``.

    ``config.path`` loads a folder; otherwise one is trained on ``model``'s hidden states over
    ``sequences`` (see :func:`collect_hidden_states`), or taken from the cache where the same model,
    layer and training keys trained one before.

    Args:
        config: the ``sae`` section; None: its defaults.
        model: the policy, on ``device`` (its bare weights: a LoRA policy's adapters are part of
            its fingerprint).
        sequences: (prompt ids, response ids) to train on.
        cache_dir: default ``$SELM_CACHE_DIR/sae``.

    Returns:
        (probe, True when nothing was trained: a folder or a cache hit).

    Raises:
        ConfigError: the layer is out of the model's range, a folder's autoencoder does not read
            the model's hidden size or reads another layer than ``sae.layer``, or k > width.
    """
    config = config or SparseAutoencoderConfig()
    lm = unwrap_causal_lm(model)
    num_layers, hidden_size = hidden_layers(lm), int(lm.config.get_text_config().hidden_size)
    if config.path is not None:
        sae, layer = load_sparse_autoencoder(config.path)
        if config.layer is not None and config.layer != layer:
            raise ConfigError(f"sae.layer: {config.layer}, but the autoencoder in sae.path reads hidden_states[{layer}]; "
                              f"remove sae.layer or load an autoencoder of that layer")
        if sae.d_model != hidden_size:
            raise ConfigError(f"sae.path: '{config.path}' reads hidden states of size {sae.d_model}, but the "
                              f"model's hidden size is {hidden_size}")
        _check_layer(layer, num_layers, "sae.path: its layer")
        return FeatureProbe(sae.requires_grad_(False).to(device), layer), True
    layer = config.layer if config.layer is not None else num_layers
    _check_layer(layer, num_layers, "sae.layer")
    width = config.width or 8 * hidden_size
    if config.k > width:
        raise ConfigError(f"sae.k ({config.k}) must be <= the autoencoder's width ({width})")
    fingerprint = model_fingerprint(model)
    folder = (cache_dir or default_cache_dir()) / cache_key(fingerprint, layer, width, config)
    if (folder / CONFIG_FILE).is_file():
        sae, _ = load_sparse_autoencoder(folder, key=f"the cached autoencoder {folder}")
        return FeatureProbe(sae.requires_grad_(False).to(device), layer), True
    states = collect_hidden_states(model, sequences, pad_token_id, layer, config.max_tokens, device, progress)
    sae, metrics = train_sparse_autoencoder(states, width, config.k, steps=config.steps, batch_size=config.batch_size,
                                            learning_rate=config.learning_rate, seed=config.seed, progress=progress)
    info: dict[str, Any] = {"model_fingerprint": fingerprint, "tokens": int(states.shape[0]), **metrics,
                            **config.model_dump(include={"steps", "batch_size", "learning_rate", "seed"})}
    publish_dir(folder, lambda tmp: save_sparse_autoencoder(sae, tmp, layer, info), CONFIG_FILE)
    if progress:
        print(f"sparse autoencoder: hidden_states[{layer}], F={width}, k={config.k}, {states.shape[0]} tokens, "
              f"fvu {metrics['fvu']:.3f}; cached in {folder}")
    return FeatureProbe(sae, layer), False


def _check_layer(layer: int, num_layers: int, key: str) -> None:
    if not 0 <= layer <= num_layers:
        raise ConfigError(f"{key} {layer} is out of range: the model has {num_layers} layers "
                          f"(hidden_states 0..{num_layers})")
