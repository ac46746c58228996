"""The table of PreferenceBatch fields: it matches the dataclass, what follows from it holds, and an
objective that needs an existing field trains with no change anywhere else."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest
import torch

from selm.data import TokenizedPair
from selm.engine import ReferencePolicy, collate_sequences, naive_sequence_logps
from selm.modeling.tiny import build_tiny_model
from selm.objectives import Objective, ObjectiveOutput, PreferenceBatch, available_objectives, get_objective
from selm.objectives.fields import (
    CLIPPED_RATIO_FIELDS,
    OPTIONAL_FIELDS,
    PAIR_VALUE_FIELDS,
    PREFERENCE_FIELDS,
    FieldSpec,
    FieldTable,
    ReferenceUse,
    Source,
)
from selm.train.config import TrainingArguments
from selm.train.trainer import PreferenceTrainer


def test_every_batch_field_has_exactly_one_row_in_declaration_order():
    declared = [f for f in fields(PreferenceBatch) if f.name != "extra"]
    assert [spec.name for spec in PREFERENCE_FIELDS if not spec.extension] == [f.name for f in declared]
    for f in declared:
        assert PREFERENCE_FIELDS[f.name].always == (f.default is MISSING), f.name
    assert OPTIONAL_FIELDS == tuple(f.name for f in declared if f.default is None)


def test_table_shapes_agree_with_a_full_batch(make_batch):
    batch = make_batch(0)
    for spec in PREFERENCE_FIELDS:
        value = getattr(batch, spec.name)
        if value is not None:
            assert value.dim() == len(spec.shape), spec.name
            assert value.shape[0] == batch.batch_size, spec.name


def test_named_axes_are_checked_across_fields():
    base = {"policy_chosen_logps": torch.zeros(3), "policy_rejected_logps": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"policy_online_logps has shape \(3,\), expected \[3, k\]"):
        PreferenceBatch(**base, policy_online_logps=torch.zeros(3))
    with pytest.raises(ValueError, match=r"rejected_lengths has shape \(4,\), expected \(3,\)"):
        PreferenceBatch(**base, rejected_lengths=torch.zeros(4))
    # k takes its size from the first [B, k] field: the reference's samples must be as many.
    with pytest.raises(ValueError, match=r"reference_online_logps has shape \(3, 2\), expected \(3, 4\)"):
        PreferenceBatch(**base, policy_online_logps=torch.zeros(3, 4), reference_online_logps=torch.zeros(3, 2))
    assert PreferenceBatch(**base, policy_online_logps=torch.zeros(3, 4),
                           reference_online_logps=torch.zeros(3, 4)).batch_size == 3


def test_derived_sets():
    assert PAIR_VALUE_FIELDS == {"routes", "label_probs", "chosen_advantages", "rejected_advantages"}
    assert CLIPPED_RATIO_FIELDS == {"chosen_clipped_ratio_logps", "rejected_clipped_ratio_logps"}
    assert set(PREFERENCE_FIELDS.counterparts("chosen", "rejected")) == {
        ("policy_chosen_logps", "policy_rejected_logps"), ("reference_chosen_logps", "reference_rejected_logps"),
        ("chosen_lengths", "rejected_lengths"), ("chosen_seq_kl", "rejected_seq_kl"),
        ("chosen_advantages", "rejected_advantages"), ("chosen_grad_norms", "rejected_grad_norms"),
        ("chosen_clipped_ratio_logps", "rejected_clipped_ratio_logps"),
        # FPO's registered fields trade places too when a label is flipped.
        ("policy_chosen_features", "policy_rejected_features"),
        ("reference_chosen_features", "reference_rejected_features")}


LIVE = {"tdpo1", "tdpo2", "hypo"}
ROWS = {"selm": {"explore"}, "xpo": {"explore"}, "vpo": {"explore"}, "hypo": {"online"},
        "spac": {"explore"}}


@pytest.mark.parametrize("name", available_objectives("PreferenceBatch"))
def test_reference_and_rows_follow_from_requires(name):
    objective = get_objective(name)
    # The live table: it includes the fields objectives registered (AIHF's is_demonstration).
    assert objective.requires <= set(PREFERENCE_FIELDS.optional)
    assert objective.needs_live_reference == (name in LIVE)
    assert objective.response_roles == {"chosen", "rejected"} | ROWS.get(name, set())
    assert not objective.needs_live_reference or objective.needs_reference


def test_alol_seq_needs_a_live_reference_through_its_clipped_ratios():
    seq = get_objective("alol", variant="seq")
    assert seq.requires & CLIPPED_RATIO_FIELDS and seq.needs_live_reference


def test_unknown_field_and_bad_role_are_rejected():
    with pytest.raises(ValueError, match="PreferenceBatch has no field"):
        PREFERENCE_FIELDS.needs_reference({"reference_chosen_logp"})
    with pytest.raises(ValueError, match="role must be one of"):
        FieldTable("B", ("chosen",), (FieldSpec("x", Source.POLICY, "logps", "other"),))
    with pytest.raises(ValueError, match="must say how it uses it"):
        FieldSpec("x", Source.REFERENCE, "logps", "chosen")


def test_the_same_mechanism_serves_a_token_level_batch():
    # A rollout batch is another table over axis "T"; nothing in the mechanism is pair-specific.
    rollouts = FieldTable("RolloutBatch", ("sample",), (
        FieldSpec("policy_token_logps", Source.POLICY, "token_logps", "sample", shape=("B", "T"), always=True),
        FieldSpec("reference_token_logps", Source.REFERENCE, "token_logps", "sample", ReferenceUse.LIVE, ("B", "T")),
        FieldSpec("advantages", Source.PAIR_VALUE, "advantage", shape=("B",)),
    ))
    assert rollouts.needs_live_reference({"reference_token_logps"}) and not rollouts.needs_reference({"advantages"})
    assert rollouts.response_roles({"advantages"}) == {"sample"}
    rollouts.check_shapes({"policy_token_logps": torch.zeros(2, 5), "advantages": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"RolloutBatch.reference_token_logps has shape \(2, 4\), expected \(2, 5\)"):
        rollouts.check_shapes({"policy_token_logps": torch.zeros(2, 5), "reference_token_logps": torch.zeros(2, 4)})


class ExploreLikelihood(Objective):
    """Throwaway: raise the exploration response's log-likelihood, optionally relative to the reference."""

    name = "explore_likelihood"

    def __init__(self, relative: bool) -> None:
        self.requires = frozenset({"policy_explore_logps", "reference_explore_logps"} if relative
                                  else {"policy_explore_logps"})

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        logps = batch.policy_explore_logps
        if batch.reference_explore_logps is not None:
            logps = logps - batch.reference_explore_logps
        return ObjectiveOutput(losses=-logps)


def _explore_logps(model: torch.nn.Module, pairs: list[TokenizedPair]) -> torch.Tensor:
    with torch.no_grad():
        return naive_sequence_logps(model, collate_sequences([(p.prompt_ids, p.explore_ids) for p in pairs], 0))


@pytest.mark.parametrize("relative", [False, True])
def test_an_objective_needing_an_existing_field_trains_with_no_other_change(tmp_path, relative):
    pairs = [TokenizedPair(i, [1, 40 + i, 41], [12, 13 + i, 2], [20, 21, 2], explore_ids=[14, 15 + i % 3, 2])
             for i in range(4)]
    objective = ExploreLikelihood(relative)
    assert objective.needs_reference == relative and not objective.needs_live_reference
    assert "explore" in objective.response_roles
    model = build_tiny_model(300)
    reference = build_tiny_model(300, seed=3).eval().requires_grad_(False)
    args = TrainingArguments(learning_rate=1e-3, per_device_train_batch_size=4, warmup_ratio=0.0, max_steps=1,
                             lr_scheduler_type="constant", max_grad_norm=None, seed=0,
                             reference_cache_dir=str(tmp_path / "cache"))
    trainer = PreferenceTrainer(model, objective, args, pairs, pad_token_id=0,
                                reference=ReferencePolicy(reference) if relative else None, progress=False)
    trainer.precompute_reference()
    batch = trainer.preference_batch(pairs, train=False)
    before = _explore_logps(model, pairs)
    torch.testing.assert_close(batch.policy_explore_logps, before, rtol=1e-5, atol=1e-5)
    if relative:
        assert trainer.reference_logps is not None  # from the cache, not a live forward
        torch.testing.assert_close(batch.reference_explore_logps, _explore_logps(reference, pairs),
                                   rtol=1e-5, atol=1e-5)
    assert trainer.train().global_step == 1
    assert float(_explore_logps(model, pairs).sum()) > float(before.sum())
