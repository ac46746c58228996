"""A top-k sparse autoencoder of a model's hidden states (Gao et al. 2024, https://arxiv.org/abs/2406.04093).

    z = ReLU(TopK_k((x − b_dec)·W_enc + b_enc)),    x̂ = z·W_dec + b_dec

x [d] a hidden state, z [F] its sparse code (at most k non-zero features), F the width. FPO reads
the codes (``selm.engine.features``); ``selm.train.sae`` trains one.

On disk a folder holds ``sae.safetensors`` (tensors ``W_enc`` [d, F], ``b_enc`` [F], ``W_dec``
[F, d], ``b_dec`` [d]) and ``sae.json`` (``{"format": "selm-topk-sae", "d_model": d, "width": F,
"k": k, "layer": ℓ}`` plus informational keys such as the training metrics); ℓ is the index into
the model's ``hidden_states`` the autoencoder reads (0: the embeddings, L: the last layer's output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from selm.errors import ConfigError
from selm.io import atomic_write_bytes, atomic_write_text

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "sae.json"
FORMAT = "selm-topk-sae"


class TopKSparseAutoencoder(torch.nn.Module):
    """Encoder W_enc [d, F] + b_enc [F], decoder W_dec [F, d] + b_dec [d], top-k ReLU codes.

    Initialised as Gao et al. do: decoder rows random unit vectors, the encoder their transpose
    (few dead features from the start), biases zero (set ``b_dec`` to the data's mean before training).

    Args:
        d_model: d, the hidden size it reads.
        width: F, features.
        k: non-zero features per code, 1 ≤ k ≤ F.
        seed: seed of the initial directions.
    """

    def __init__(self, d_model: int, width: int, k: int, seed: int = 0):
        super().__init__()
        if not 1 <= k <= width:
            raise ValueError(f"sparse autoencoder: k must be in 1..width ({width}), got {k}")
        directions = torch.randn(width, d_model, generator=torch.Generator().manual_seed(seed))
        directions /= directions.norm(dim=-1, keepdim=True)
        self.W_dec = torch.nn.Parameter(directions)
        self.W_enc = torch.nn.Parameter(directions.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_model))
        self.k = k

    @property
    def d_model(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def width(self) -> int:
        return int(self.W_enc.shape[1])

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(x − b_dec)·W_enc + b_enc: [..., d] -> [..., F], in the wider of x's and the weights' dtypes."""
        dtype = torch.promote_types(x.dtype, self.W_enc.dtype)
        return (x.to(dtype) - self.b_dec.to(dtype)) @ self.W_enc.to(dtype) + self.b_enc.to(dtype)

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The code of x as its k largest pre-activations after ReLU, without the dense [..., F] code.

        Returns:
            (values [..., k] ≥ 0, indices [..., k] into F). ReLU after TopK equals TopK after
            ReLU: a negative pre-activation among the k largest becomes a 0 either way.
        """
        top = self.pre_activations(x).topk(self.k, dim=-1)
        return torch.relu(top.values), top.indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., F] dense code z, at most k non-zeros per row (all ≥ 0)."""
        values, indices = self.encode_topk(x)
        return torch.zeros(*values.shape[:-1], self.width, dtype=values.dtype,
                           device=values.device).scatter(-1, indices, values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[..., F] -> [..., d]: z·W_dec + b_dec."""
        return z @ self.W_dec.to(z.dtype) + self.b_dec.to(z.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ = decode(encode(x)), [..., d]."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale each decoder row to unit norm (the codes carry the magnitude; Gao et al. keep this
        after every step)."""
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def save_sparse_autoencoder(sae: TopKSparseAutoencoder, folder: str | Path, layer: int,
                            info: dict[str, Any] | None = None) -> None:
    """Write ``sae`` and the ``hidden_states`` index it reads to ``folder`` (created), each file atomically.

    Args:
        info: extra JSON keys (training metrics, the model's fingerprint), informational only.
    """
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().float().cpu().contiguous() for name, p in sae.named_parameters()}
    atomic_write_bytes(folder / WEIGHTS_FILE, save(tensors))
    config = {"format": FORMAT, "d_model": sae.d_model, "width": sae.width, "k": sae.k, "layer": layer,
              **(info or {})}
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def load_sparse_autoencoder(folder: str | Path, key: str = "sae.path") -> tuple[TopKSparseAutoencoder, int]:
    """The autoencoder in ``folder`` and the ``hidden_states`` index it reads.

    Raises:
        ConfigError: naming ``key`` and the folder, when a file is missing or does not describe
            a selm top-k autoencoder of consistent shapes.
    """
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"{key}: '{folder}' holds no {missing[0]} (a sparse autoencoder folder has {CONFIG_FILE} "
                          f"and {WEIGHTS_FILE})")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        d, width, k, layer = (int(config[name]) for name in ("d_model", "width", "k", "layer"))
        tensors = load_file(folder / WEIGHTS_FILE)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(f"{key}: '{folder}' is not a readable sparse autoencoder ({exc})") from None
    if config.get("format") != FORMAT:
        raise ConfigError(f"{key}: '{folder / CONFIG_FILE}' has format {config.get('format')!r}, expected '{FORMAT}'")
    sae = TopKSparseAutoencoder(d, width, k) if 1 <= k <= width else None
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()} if sae is not None else {}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if sae is None or found != expected:
        raise ConfigError(f"{key}: '{folder}': tensors {found} do not fit d_model {d}, width {width}, k {k}")
    sae.load_state_dict(tensors)
    return sae, layer
