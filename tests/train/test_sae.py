"""FPO's autoencoder for a run: training reduces the reconstruction error, the cache is hit on a
second use, and bad layers or folders are one-line config errors."""

import pytest
import torch

import selm.train.sae as sae_module
from selm.errors import ConfigError
from selm.modeling.sae import TopKSparseAutoencoder, save_sparse_autoencoder
from selm.modeling.tiny import build_tiny_model
from selm.train.config import SparseAutoencoderConfig
from selm.train.sae import feature_probe, reconstruction_mse, train_sparse_autoencoder

SEQUENCES = [([1, 5, 6, 7], [8, 9, 2]), ([1, 10], [11, 12, 13, 2]), ([1, 15, 16], [17, 2])] * 4
FAST = {"width": 32, "k": 4, "steps": 20, "batch_size": 32, "learning_rate": 1e-2}


def test_training_reduces_the_reconstruction_error_of_a_fixed_sparse_set():
    # 512 points, each a non-negative mix of 3 of 24 fixed directions plus an offset: what a k = 4 code can hold.
    g = torch.Generator().manual_seed(0)
    atoms = torch.randn(24, 16, generator=g)
    codes = torch.zeros(512, 24).scatter(1, torch.rand(512, 24, generator=g).topk(3, dim=1).indices,
                                         torch.rand(512, 3, generator=g) + 0.5)
    states = codes @ atoms + 0.3
    untrained = TopKSparseAutoencoder(16, 48, 4, seed=1)
    with torch.no_grad():
        untrained.b_dec.copy_(states.mean(0))  # the trainer's own start
    before = reconstruction_mse(untrained, states)
    sae, metrics = train_sparse_autoencoder(states, 48, 4, steps=300, batch_size=128, learning_rate=1e-2, seed=1)
    assert metrics["mse"] == pytest.approx(reconstruction_mse(sae, states))
    # Measured: mse 1.89 -> ~0.17 (fvu ~0.065) over seeds 1-3; a third of the start leaves a wide margin.
    assert metrics["mse"] < before / 3 and 0 <= metrics["fvu"] < 0.5
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(48))
    assert not any(p.requires_grad for p in sae.parameters())


def test_the_second_use_is_a_cache_hit_without_training(tmp_path, monkeypatch):
    model = build_tiny_model(64, hidden_size=16, num_hidden_layers=2)
    config = SparseAutoencoderConfig(**FAST)
    first, hit = feature_probe(config, model, SEQUENCES, 0, device="cpu", cache_dir=tmp_path)
    assert not hit and first.layer == 2 and first.sae.width == 32 and first.sae.d_model == 16

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(sae_module, "train_sparse_autoencoder", no_training)
    again, hit = feature_probe(config, model, SEQUENCES, 0, device="cpu", cache_dir=tmp_path)
    assert hit and again.layer == 2 and again.key == first.key
    # Another layer is another autoencoder.
    with pytest.raises(AssertionError, match="trained again"):
        feature_probe(config.model_copy(update={"layer": 1}), model, SEQUENCES, 0, device="cpu", cache_dir=tmp_path)


def test_the_width_defaults_to_eight_times_the_hidden_size(tmp_path):
    model = build_tiny_model(64, hidden_size=8, num_hidden_layers=1)
    probe, _ = feature_probe(SparseAutoencoderConfig(k=2, steps=1, batch_size=4), model, SEQUENCES, 0, device="cpu",
                             cache_dir=tmp_path)
    assert probe.sae.width == 64


def test_bad_layers_and_folders(tmp_path):
    model = build_tiny_model(64, hidden_size=16, num_hidden_layers=2)

    def probe(**keys):
        return feature_probe(SparseAutoencoderConfig(**keys), model, SEQUENCES, 0, device="cpu", cache_dir=tmp_path)

    with pytest.raises(ConfigError, match=r"sae.layer 3 is out of range: the model has 2 layers \(hidden_states 0..2\)"):
        probe(layer=3, **FAST)
    with pytest.raises(ConfigError, match=r"sae.k \(200\) must be <= the autoencoder's width \(128\)"):
        probe(k=200)
    save_sparse_autoencoder(TopKSparseAutoencoder(12, 32, 4), tmp_path / "wide", layer=1)
    with pytest.raises(ConfigError, match="reads hidden states of size 12, but the model's hidden size is 16"):
        probe(path=str(tmp_path / "wide"))
    save_sparse_autoencoder(TopKSparseAutoencoder(16, 32, 4), tmp_path / "good", layer=1)
    with pytest.raises(ConfigError, match=r"sae.layer: 2, but the autoencoder in sae.path reads hidden_states\[1\]"):
        probe(path=str(tmp_path / "good"), layer=2)
    loaded, hit = probe(path=str(tmp_path / "good"))
    assert hit and loaded.layer == 1
