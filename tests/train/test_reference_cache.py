"""Reference log-probs: one no-grad pass with the trainer's rows per forward, cached atomically on disk."""

from __future__ import annotations

import torch

from selm.data import TokenizedPair, collate_preference_rows
from selm.engine import ReferencePolicy, collate_sequences, naive_sequence_logps, sequence_stats
from selm.modeling.tiny import build_tiny_model
from selm.train.reference_cache import cache_key, cached_reference_logps, compute_reference_logps, default_cache_dir


def reference():
    return ReferencePolicy(build_tiny_model(300, seed=4).eval().requires_grad_(False))


def test_values_are_each_roles_log_probs_from_the_trainers_forwards(make_pairs):
    pairs = make_pairs(5, explore=True)
    ref = reference()
    got = compute_reference_logps(ref, pairs, 0, batch_size=2, include_explore=True, progress=False)
    assert list(got) == ["chosen", "rejected", "explore"]
    for role, values in got.items():
        assert values.shape == (5,) and values.dtype == torch.float32
        with torch.no_grad():
            naive = naive_sequence_logps(ref.model, collate_sequences([(p.prompt_ids, getattr(p, f"{role}_ids"))
                                                                       for p in pairs], 0))
        torch.testing.assert_close(values, naive, rtol=1e-5, atol=1e-5)
    # Bit for bit what a forward over a training batch of the same two pairs gives (last batch: one pair).
    for start in range(0, 5, 2):
        batch, layout = collate_preference_rows(pairs[start:start + 2], 0, include_explore=True)
        with torch.no_grad():
            logps = sequence_stats(ref.model, batch).logps
        for role in layout.roles:
            assert torch.equal(got[role][start:start + 2], logps[layout.rows(role)]), role


def test_without_explore_only_chosen_and_rejected(make_pairs):
    got = compute_reference_logps(reference(), make_pairs(3), 0, progress=False)
    assert list(got) == ["chosen", "rejected"]


def test_cache_hit_miss_and_corrupt_file(tmp_path, make_pairs):
    pairs = make_pairs(4)
    first, hit = cached_reference_logps(reference(), "fp", pairs, 0, cache_dir=tmp_path, progress=False)
    assert not hit
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # written atomically: no temporary left
    again, hit = cached_reference_logps(reference(), "fp", pairs, 0, cache_dir=tmp_path, progress=False)
    assert hit and all(torch.equal(first[k], again[k]) for k in first)
    _, hit = cached_reference_logps(reference(), "other", pairs, 0, cache_dir=tmp_path, progress=False)
    assert not hit and len(list(tmp_path.iterdir())) == 2
    files[0].write_bytes(b"not safetensors")
    recomputed, hit = cached_reference_logps(reference(), "fp", pairs, 0, cache_dir=tmp_path, progress=False)
    assert not hit and all(torch.equal(first[k], recomputed[k]) for k in first)
    _, hit = cached_reference_logps(reference(), "fp", pairs, 0, cache_dir=tmp_path, progress=False)
    assert hit


def test_cache_key_changes_with_the_reference_and_every_token(make_pairs):
    pairs = make_pairs(3, explore=True)
    key = cache_key("ref-a", pairs, include_explore=False)
    assert cache_key("ref-a", make_pairs(3, explore=True), include_explore=False) == key
    assert cache_key("ref-b", pairs, include_explore=False) != key
    assert cache_key("ref-a", pairs, include_explore=True) != key
    edited = pairs[:2] + [TokenizedPair(pairs[2].index, pairs[2].prompt_ids, pairs[2].chosen_ids + [5],
                                        pairs[2].rejected_ids, pairs[2].explore_ids)]
    assert cache_key("ref-a", edited, include_explore=False) != key
    # Token boundaries matter: [1, 23] is not [12, 3].
    a, b = [TokenizedPair(0, [1, 23], [4], [5])], [TokenizedPair(0, [12, 3], [4], [5])]
    assert cache_key("ref", a, include_explore=False) != cache_key("ref", b, include_explore=False)


def test_default_cache_dir_is_under_the_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SELM_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "reference_logps"
