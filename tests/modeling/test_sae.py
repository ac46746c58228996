"""The top-k sparse autoencoder: codes against a float64 sort of the pre-activations, and its folder format."""

import json

import pytest
import torch

from selm.errors import ConfigError
from selm.modeling.sae import TopKSparseAutoencoder, load_sparse_autoencoder, save_sparse_autoencoder

D, F, K = 6, 20, 4


def autoencoder(seed=0) -> TopKSparseAutoencoder:
    sae = TopKSparseAutoencoder(D, F, K, seed=seed).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return sae


def test_the_code_keeps_the_k_largest_pre_activations_after_relu():
    sae = autoencoder()
    x = torch.randn(7, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = sae.encode(x)
    assert z.shape == (7, F) and bool((z >= 0).all())
    for row, code in zip(x.tolist(), z):
        # (x − b_dec)·W_enc + b_enc by hand, then the k largest, negatives to 0.
        pre = [sum((row[i] - sae.b_dec[i].item()) * sae.W_enc[i, j].item() for i in range(D)) + sae.b_enc[j].item()
               for j in range(F)]
        top = sorted(range(F), key=lambda j: -pre[j])[:K]
        expected = [max(pre[j], 0.0) if j in top else 0.0 for j in range(F)]
        torch.testing.assert_close(code, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sae(x), z @ sae.W_dec + sae.b_dec, rtol=0, atol=0)


def test_exactly_k_features_per_row_when_the_pre_activations_are_positive():
    sae = autoencoder()
    with torch.no_grad():
        sae.b_enc.fill_(1e3)  # every pre-activation positive: ReLU removes none of the k
    z = sae.encode(torch.randn(9, 3, D, dtype=torch.float64))
    assert z.shape == (9, 3, F)
    assert bool(((z != 0).sum(-1) == K).all())


def test_k_must_fit_the_width():
    with pytest.raises(ValueError, match="k must be in 1..width"):
        TopKSparseAutoencoder(D, 3, 4)


def test_save_and_load_round_trip(tmp_path):
    sae = autoencoder(3).float()
    save_sparse_autoencoder(sae, tmp_path / "sae", layer=5, info={"fvu": 0.25})
    config = json.loads((tmp_path / "sae" / "sae.json").read_text())
    assert config == {"format": "selm-topk-sae", "d_model": D, "width": F, "k": K, "layer": 5, "fvu": 0.25}
    loaded, layer = load_sparse_autoencoder(tmp_path / "sae")
    assert layer == 5 and loaded.k == K
    for name, p in sae.named_parameters():
        assert torch.equal(p, dict(loaded.named_parameters())[name]), name


def test_bad_folders_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="sae.path: '.*' holds no sae.json"):
        load_sparse_autoencoder(tmp_path)
    save_sparse_autoencoder(autoencoder().float(), tmp_path, layer=1)
    config = json.loads((tmp_path / "sae.json").read_text())
    (tmp_path / "sae.json").write_text(json.dumps({**config, "width": F + 1}))
    with pytest.raises(ConfigError, match="do not fit d_model 6, width 21, k 4"):
        load_sparse_autoencoder(tmp_path)
    (tmp_path / "sae.json").write_text(json.dumps({**config, "format": "other"}))
    with pytest.raises(ConfigError, match="has format 'other'"):
        load_sparse_autoencoder(tmp_path)
