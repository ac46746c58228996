"""Per-pair data fields reach the objective: extras (routes, soft labels, advantages) and HyPO's
online samples with their policy and live-reference log-probs."""

from dataclasses import replace

import pytest
import torch

from selm.engine import (
    ReferencePolicy,
    collate_sequences,
    naive_sequence_logps,
    sequence_stats,
)
from selm.errors import UserError
from selm.modeling.tiny import build_tiny_model
from selm.objectives import build_objective
from selm.train.config import TrainingArguments
from selm.train.trainer import PreferenceTrainer


def args(**kw):
    return TrainingArguments(learning_rate=1e-3, per_device_train_batch_size=4, warmup_ratio=0.0,
                             lr_scheduler_type="constant", logging_steps=1, max_grad_norm=None, seed=0, **kw)


def other_reference():
    ref = build_tiny_model(300)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ReferencePolicy(ref.eval().requires_grad_(False))


def with_online(pairs, k=3):
    return [replace(p, online_ids=[[10 + (p.index + j) % 15, 11, 2][: 1 + j % 3] for j in range(k)],
                    extras={"routes": float(p.index % 4)}) for p in pairs]


def test_online_logps_are_the_policy_and_reference_logps_of_each_sample(tmp_path, make_pairs):
    pairs = with_online(make_pairs(4))
    model, reference = build_tiny_model(300), other_reference()
    trainer = PreferenceTrainer(model, build_objective("hypo"), args(max_steps=1), pairs, pad_token_id=0,
                                reference=reference, output_dir=tmp_path, progress=False)
    trainer.precompute_reference()
    assert trainer.reference_logps is None  # the online samples need the reference at every step
    batch = trainer.preference_batch(pairs, train=False)
    sequences = [(p.prompt_ids, ids) for p in pairs for ids in p.online_ids]
    seq = collate_sequences(sequences, 0)
    with torch.no_grad():
        policy = naive_sequence_logps(model, seq).view(4, 3)
        ref = naive_sequence_logps(reference.model, seq).view(4, 3)
    torch.testing.assert_close(batch.policy_online_logps, policy, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch.reference_online_logps, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(policy, ref)
    assert trainer.train().global_step == 1


def test_extras_become_batch_fields(tmp_path, make_pairs):
    pairs = with_online(make_pairs(4))
    model = build_tiny_model(300)
    trainer = PreferenceTrainer(model, build_objective("sail"), args(max_steps=1), pairs, pad_token_id=0,
                                reference=other_reference(), output_dir=tmp_path, progress=False)
    assert trainer.preference_batch(pairs, train=False).routes.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_missing_extra_or_online_samples_name_the_row(tmp_path, make_pairs):
    pairs = with_online(make_pairs(4))
    pairs[2] = replace(pairs[2], extras={})
    with pytest.raises(UserError, match="objective 'sail' needs 'routes' for every pair; row 2 has none"):
        PreferenceTrainer(build_tiny_model(300), build_objective("sail"), args(), pairs, pad_token_id=0,
                          reference=other_reference(), progress=False)
    pairs[2] = replace(pairs[2], online_ids=pairs[2].online_ids[:2])
    with pytest.raises(UserError, match="objective 'hypo' needs the same number"):
        PreferenceTrainer(build_tiny_model(300), build_objective("hypo"), args(), pairs, pad_token_id=0,
                          reference=other_reference(), progress=False)


def test_alol_seq_gets_the_engines_clipped_ratio_sums_with_a_live_reference(tmp_path, make_pairs):
    pairs = [replace(p, extras={"chosen_advantages": 1.0, "rejected_advantages": -0.5}) for p in make_pairs(4)]
    model, reference = build_tiny_model(300), other_reference()
    objective = build_objective({"name": "alol", "variant": "seq", "epsilon": 0.05})
    trainer = PreferenceTrainer(model, objective, args(max_steps=1), pairs, pad_token_id=0,
                                reference=reference, output_dir=tmp_path, progress=False)
    trainer.precompute_reference()
    assert trainer.reference_logps is None  # the per-token ratios need the reference at every step
    batch = trainer.preference_batch(pairs, train=False)
    seq = collate_sequences([(p.prompt_ids, p.chosen_ids) for p in pairs]
                            + [(p.prompt_ids, p.rejected_ids) for p in pairs], 0)
    with torch.no_grad():
        direct = sequence_stats(model, seq, reference=reference, ratio_clip=0.05).clipped_ratio_logps
    torch.testing.assert_close(batch.chosen_clipped_ratio_logps, direct[:4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch.rejected_clipped_ratio_logps, direct[4:], rtol=1e-5, atol=1e-5)
    # ε = 0.05 binds for this reference: the sums differ from the plain log-probs.
    assert not torch.allclose(batch.chosen_clipped_ratio_logps, batch.policy_chosen_logps)
    assert trainer.train().global_step == 1
