"""FPO in the trainers: the reference's pooled features precomputed with its log-probs and cached,
D = 0 while the policy is the reference, and `selm train` end to end with a trained autoencoder
(its cache hit on a second use: tests/train/test_sae.py)."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from selm.cli import main
from selm.data import collate_preference_rows
from selm.engine import FeatureProbe, ReferencePolicy, sequence_stats
from selm.errors import UserError
from selm.modeling.sae import TopKSparseAutoencoder
from selm.objectives import get_objective
from selm.train.config import TrainingArguments
from selm.train.reference_cache import cached_reference_logps, compute_reference_logps, split_features
from selm.train.trainer import PreferenceTrainer

DATA = Path(__file__).parents[2] / "examples" / "data" / "sort-preferences.jsonl"


def probe(layer: int = 2) -> FeatureProbe:
    sae = TopKSparseAutoencoder(64, 48, 6, seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(0.05)  # most codes keep all k features
    return FeatureProbe(sae.requires_grad_(False), layer)


def args(tmp_path, **kw) -> TrainingArguments:
    base = {"learning_rate": 1e-3, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "max_steps": 3,
            "warmup_ratio": 0.0, "reference_cache_dir": str(tmp_path / "ref")}
    return TrainingArguments(**{**base, **kw})


def test_reference_features_come_from_the_trainers_forwards_and_are_cached(tmp_path, make_pairs, tiny_model):
    pairs, features = make_pairs(5), probe(1)
    ref = ReferencePolicy(tiny_model.eval())
    values = compute_reference_logps(ref, pairs, 0, batch_size=2, features=features, progress=False)
    logps, pooled = split_features(values)
    assert list(logps) == ["chosen", "rejected"] and pooled["chosen"].shape == (5, 48)
    # The log-probs are those of a plain precompute; the features those of a forward over each training batch.
    assert all(torch.equal(logps[r], v) for r, v in compute_reference_logps(ref, pairs, 0, batch_size=2,
                                                                             progress=False).items())
    for start in range(0, 5, 2):
        batch, layout = collate_preference_rows(pairs[start:start + 2], 0)
        with torch.no_grad():
            stats = sequence_stats(tiny_model, batch, features=features)
        for role in layout.roles:
            assert torch.equal(pooled[role][start:start + 2], stats.features[layout.rows(role)]), role
    first, hit = cached_reference_logps(ref, "fp", pairs, 0, cache_dir=tmp_path, features=features, progress=False)
    assert not hit and set(first) == {"chosen", "rejected", "features.chosen", "features.rejected"}
    again, hit = cached_reference_logps(ref, "fp", pairs, 0, cache_dir=tmp_path, features=features, progress=False)
    assert hit and all(torch.equal(first[k], again[k]) for k in first)
    # Another autoencoder (or none) is another cache entry.
    _, hit = cached_reference_logps(ref, "fp", pairs, 0, cache_dir=tmp_path, features=probe(2), progress=False)
    assert not hit and len(list(tmp_path.iterdir())) == 2


def test_fpo_trains_with_zero_distance_at_the_start(tmp_path, make_pairs, tiny_model):
    pairs, features = make_pairs(12), probe()
    fpo = get_objective("fpo", beta=0.5, alpha=1.0, top_k=8)
    reference = ReferencePolicy(copy.deepcopy(tiny_model).eval().requires_grad_(False))
    trainer = PreferenceTrainer(tiny_model, fpo, args(tmp_path), pairs, 0, reference=reference, progress=False,
                                features=features)
    trainer.prepare()
    assert trainer.reference_cache_hit is False and trainer.reference_features["rejected"].shape == (12, 48)
    # θ = ref: the features agree up to float32 rounding of other batch shapes, so D ≈ 0 and the loss is log 2.
    batch = trainer.preference_batch(pairs[:4], train=False)
    assert batch.policy_chosen_features.shape == (4, 48) and bool((batch.policy_rejected_features > 0).any())
    torch.testing.assert_close(batch.policy_rejected_features, batch.reference_rejected_features, rtol=1e-5, atol=1e-6)
    out = fpo(batch)
    assert float(out.metrics["fpo/distance_rejected"]) < 1e-10
    torch.testing.assert_close(out.losses, torch.full((4,), math.log(2)), rtol=0, atol=1e-5)
    result = trainer.train()
    assert result.global_step == 3 and math.isfinite(result.metrics["loss"])
    moved = fpo(trainer.preference_batch(pairs[:4], train=False)).metrics["fpo/distance_rejected"]
    assert float(moved) > 1e-8  # the policy moved away from the reference in feature space
    # A second trainer on the same pairs and reference reads the cache, features included.
    again = PreferenceTrainer(copy.deepcopy(reference.model).requires_grad_(True), fpo, args(tmp_path), pairs, 0,
                              reference=reference, progress=False, features=features)
    again.prepare()
    assert again.reference_cache_hit is True
    assert torch.equal(again.reference_features["chosen"], trainer.reference_features["chosen"])


def test_the_live_reference_gives_the_cached_values(tmp_path, make_pairs, tiny_model):
    pairs, features, fpo = make_pairs(4), probe(1), get_objective("fpo")
    reference = ReferencePolicy(copy.deepcopy(tiny_model).eval().requires_grad_(False))
    cached = PreferenceTrainer(tiny_model, fpo, args(tmp_path), pairs, 0, reference=reference, progress=False,
                               features=features)
    cached.prepare()
    live = PreferenceTrainer(tiny_model, fpo, args(tmp_path, precompute_reference=False), pairs, 0,
                             reference=reference, progress=False, features=features)
    a, b = cached.preference_batch(pairs, train=False), live.preference_batch(pairs, train=False)
    torch.testing.assert_close(a.reference_chosen_features, b.reference_chosen_features, rtol=1e-5, atol=1e-6)


def test_an_objective_that_reads_features_needs_an_autoencoder(tmp_path, make_pairs, tiny_model):
    with pytest.raises(UserError, match="objective 'fpo' reads sparse-autoencoder features: the trainer needs"):
        PreferenceTrainer(tiny_model, get_objective("fpo"), args(tmp_path), make_pairs(2), 0,
                          reference=ReferencePolicy(tiny_model), progress=False)


def test_selm_train_fpo_end_to_end(tmp_path, monkeypatch):
    from selm.tasks.sources import resolve_model_source

    model = resolve_model_source("builtin:sort")  # built once in the usual cache; the autoencoder's goes to tmp_path
    monkeypatch.setenv("SELM_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(DATA.read_text().splitlines(keepends=True)[:24]))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""model_name_or_path: {model}
dataset: {data}
objective: {{name: fpo, beta: 0.1, alpha: 0.5, top_k: 20}}
sae: {{layer: 1, width: 128, k: 8, steps: 30, batch_size: 64, learning_rate: 1.0e-3, max_tokens: 2048}}
output_dir: {tmp_path / 'out'}
train: {{learning_rate: 1.0e-3, per_device_train_batch_size: 8, max_steps: 3, max_length: 64, warmup_ratio: 0.0,
        reference_cache_dir: {tmp_path / 'ref'}}}
""")
    assert main(["train", str(recipe), "--quiet"]) == 0
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    steps = [e for e in log if "loss" in e]
    assert len(steps) == 3 and all(math.isfinite(e["loss"]) for e in steps)
    assert steps[0]["fpo/distance_rejected"] < 1e-10 and steps[-1]["fpo/distance_rejected"] > 0
    saved = list((tmp_path / "cache" / "sae").glob("*/sae.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["layer"] == 1
