"""FPO's pooled features from the engine's forward, against each sequence run alone in float64."""

import pytest
import torch

from selm.engine import FeatureProbe, collate_sequences, pack_sequences, sequence_stats
from selm.modeling.sae import TopKSparseAutoencoder
from selm.modeling.tiny import build_tiny_model

VOCAB, WIDTH, K = 301, 24, 3
SEQUENCES = [([5, 6, 7], [8, 9]), ([10], [11, 12, 13, 14]), ([15, 16], [17]), ([18, 19, 20, 21, 22], [23, 24, 25])]


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(VOCAB, num_hidden_layers=3).double().eval()


def probe(layer: int) -> FeatureProbe:
    sae = TopKSparseAutoencoder(64, WIDTH, K, seed=1).double()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    return FeatureProbe(sae.requires_grad_(False), layer)


def alone(model, features: FeatureProbe) -> torch.Tensor:
    """c̄ by hand: each sequence run by itself (no padding, no neighbours), hidden_states[layer] at
    the |y| positions that predict its response tokens, coded, averaged; [N, F] float64."""
    rows = []
    for prompt, response in SEQUENCES:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([prompt + response]), output_hidden_states=True)
        states = out.hidden_states[features.layer][0, len(prompt) - 1:len(prompt) + len(response) - 1]
        assert states.shape[0] == len(response)
        rows.append(features.sae.encode(states).mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("layer", [3, 1, 0])
def test_pooled_features_mask_prompt_padding_and_neighbours(model, layer):
    features = probe(layer)
    expected = alone(model, features)
    padded = collate_sequences(SEQUENCES, 0, "right", pad_to_multiple_of=16)  # 7+ pad positions per row
    for batch in (padded, collate_sequences(SEQUENCES, 0, "left"), pack_sequences(SEQUENCES, 0, "rows")):
        with torch.no_grad():
            stats = sequence_stats(model, batch, features=features)
        # float64 forwards of different shapes: differences ~1e-15 relative; the top-k sets agree.
        torch.testing.assert_close(stats.features, expected, rtol=1e-9, atol=1e-12)
    assert bool((expected > 0).any())


def test_feature_gradients_reach_the_policy_only_through_the_kept_features(model):
    features = probe(3)
    policy = build_tiny_model(VOCAB, num_hidden_layers=3).double()
    stats = sequence_stats(policy, collate_sequences(SEQUENCES, 0), features=features)
    assert stats.features.shape == (len(SEQUENCES), WIDTH)
    stats.features.sum().backward()
    assert policy.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert all(p.grad is None for p in features.sae.parameters())
