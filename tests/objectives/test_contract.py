"""The objective contract: requires, missing fields, hyperparameter validation, registry,
build_objective, weighted sums, metrics and dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import (
    PreferenceBatch,
    WeightedObjective,
    available_objectives,
    build_objective,
    get_objective,
)

REF = {"reference_chosen_logps", "reference_rejected_logps"}
LEN = {"chosen_lengths", "rejected_lengths"}
KL = {"chosen_seq_kl", "rejected_seq_kl"}

# The engine computes exactly these fields for each objective.
REQUIRES = {
    "dpo": REF, "sigmoid": REF, "robust": REF, "hinge": REF, "ipo": REF | LEN,
    "simpo": LEN, "sft": {"chosen_lengths"},
    "selm": REF | {"policy_explore_logps", "reference_explore_logps"},
    "xpo": REF | {"policy_explore_logps"},
    "tdpo1": REF | KL, "tdpo2": REF | KL,
    "sigmoid_norm": REF | LEN, "nca_pair": REF, "bco_pair": REF, "sppo_hard": REF,
    "apo_zero": REF, "apo_down": REF, "exo_pair": REF, "discopop": REF,
    "normalized_margin": REF | {"chosen_grad_norms", "rejected_grad_norms"},
    "sail": REF | {"routes"}, "vpo": REF | {"policy_explore_logps"},
    "hypo": REF | {"policy_online_logps", "reference_online_logps"},
    "osp": REF | {"label_probs"}, "spce": REF | {"label_probs"}, "lcpo": REF,
    "alol": REF | {"chosen_advantages", "rejected_advantages"}, "cpl": set(),
    "spac": REF | {"policy_explore_logps", "reference_explore_logps"}, "aihf": REF | {"is_demonstration"},
    "fpo": REF | LEN | {"policy_chosen_features", "policy_rejected_features", "reference_chosen_features",
                        "reference_rejected_features"},
}

DEFAULTS = {
    "dpo": {"beta": 0.1, "label_smoothing": 0.0}, "sigmoid": {"beta": 0.1, "label_smoothing": 0.0},
    "robust": {"beta": 0.1, "label_smoothing": 0.0}, "ipo": {"beta": 0.1}, "hinge": {"beta": 0.1},
    "simpo": {"beta": 2.0, "gamma": 0.5, "label_smoothing": 0.0}, "sft": {},
    "selm": {"beta": 0.01, "alpha": 0.001}, "xpo": {"beta": 0.1, "alpha": 1e-5},
    "tdpo1": {"beta": 0.1}, "tdpo2": {"beta": 0.1, "alpha": 0.5},
    "sigmoid_norm": {"beta": 0.1}, "nca_pair": {"beta": 0.1}, "bco_pair": {"beta": 0.1},
    "sppo_hard": {"beta": 0.1}, "apo_zero": {"beta": 0.1}, "apo_down": {"beta": 0.1},
    "exo_pair": {"beta": 0.1, "label_smoothing": 1e-3}, "discopop": {"beta": 0.1, "tau": 0.05},
    "normalized_margin": {"beta": 0.1},
    "sail": {"beta": 0.1, "rho": 0.0, "pi": 0.0, "gamma": 0.0, "extra_gradient": "code"},
    "vpo": {"beta": 0.1, "alpha": 0.001, "mode": "online"}, "hypo": {"beta": 0.1, "kl_coef": 0.05},
    "osp": {"beta": 0.1}, "spce": {"beta": 0.1},
    "lcpo": {"reliability": 0.9, "momentum": 0.1, "complement": True},
    "alol": {"epsilon": 0.9, "variant": "alol"}, "cpl": {"alpha": 0.1, "contrastive_bias": 0.5},
    "spac": {"beta": 0.1, "lam": 1.0}, "aihf": {"beta": 0.1, "preference_weight": 1.0, "demonstration_weight": 1.0},
    "fpo": {"beta": 0.1, "alpha": 0.5, "top_k": 50},
}


def test_registered_names():
    assert available_objectives("PreferenceBatch") == sorted(REQUIRES)


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_requires_and_defaults(name):
    objective = get_objective(name)
    assert objective.requires == REQUIRES[name]
    # Private attributes (lcpo's wrapped objective) are not hyperparameter values.
    assert {k: v for k, v in vars(objective).items() if not k.startswith("_")} == DEFAULTS[name]
    assert objective.needs_reference == (name not in ("simpo", "sft", "cpl"))


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_runs_on_exactly_the_required_fields(name, make_batch):
    objective = get_objective(name)
    full = objective(make_batch(0))
    minimal = objective(make_batch(0, only=objective.requires))
    assert torch.equal(minimal.losses, full.losses)
    # Every declared field is read: changing it changes the loss or a metric.
    for field in sorted(objective.requires):
        batch = make_batch(0)
        setattr(batch, field, getattr(batch, field) + 0.37)
        out = objective(batch)
        changed = not torch.equal(out.losses, full.losses) or any(
            not torch.equal(out.metrics[k], full.metrics[k]) for k in full.metrics)
        assert changed, field


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_missing_required_field_names_it(name, make_batch):
    objective = get_objective(name)
    for field in sorted(objective.requires):
        with pytest.raises(ConfigError, match=f"objective '{objective.name}' needs the field '{field}'"):
            objective(make_batch(0, only=objective.requires - {field}))


def test_simpo_runs_without_reference(make_batch):
    batch = make_batch(0, only=frozenset(LEN))
    assert batch.reference_chosen_logps is None and batch.reference_rejected_logps is None
    out = get_objective("simpo")(batch)
    assert out.losses.shape == (7,) and bool(torch.isfinite(out.losses).all())


def test_dpo_without_smoothing_equals_sigmoid(make_batch):
    batch = make_batch(1)
    assert torch.equal(get_objective("dpo", beta=0.2, label_smoothing=0.0)(batch).losses,
                       get_objective("sigmoid", beta=0.2)(batch).losses)


def test_selm_with_zero_alpha_equals_dpo(make_batch):
    batch = make_batch(2)
    selm = get_objective("selm", beta=0.05, alpha=0.0)(batch)
    dpo = get_objective("dpo", beta=0.05)(batch)
    assert torch.equal(selm.losses, dpo.losses)
    assert selm.metrics["loss/optimism"].item() == 0.0


def test_robust_without_noise_equals_dpo(make_batch):
    batch = make_batch(3)
    torch.testing.assert_close(get_objective("robust", beta=0.3)(batch).losses,
                               get_objective("dpo", beta=0.3)(batch).losses, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize(("name", "hyperparameters", "key"), [
    ("dpo", {"beta": -1}, "beta"),
    ("dpo", {"beta": 0}, "beta"),
    ("dpo", {"beta": math.nan}, "beta"),
    ("dpo", {"beta": "0.1"}, "beta"),
    ("dpo", {"beta": True}, "beta"),
    ("dpo", {"label_smoothing": -0.1}, "label_smoothing"),
    ("robust", {"label_smoothing": 0.6}, "label_smoothing"),
    ("robust", {"label_smoothing": 0.5}, "label_smoothing"),
    ("simpo", {"gamma": -0.5}, "gamma"),
    ("simpo", {"beta": -2.0}, "beta"),
    ("selm", {"alpha": -1e-3}, "alpha"),
    ("xpo", {"alpha": -1e-5}, "alpha"),
    ("tdpo2", {"alpha": -0.5}, "alpha"),
    ("exo_pair", {"label_smoothing": 0.0}, "label_smoothing"),
    ("discopop", {"tau": 0.0}, "tau"),
    ("ipo", {"beta": math.inf}, "beta"),
    ("spac", {"lam": -1.0}, "lam"),
    ("aihf", {"demonstration_weight": -0.5}, "demonstration_weight"),
])
def test_invalid_hyperparameter(name, hyperparameters, key):
    with pytest.raises(ConfigError, match=f"objective '{name}': {key} must be"):
        get_objective(name, **hyperparameters)


def test_unknown_hyperparameter_names_it():
    with pytest.raises(ConfigError, match=r"objective 'dpo': unknown hyperparameter\(s\) gama, temperature; "
                                          r"known: beta, label_smoothing"):
        get_objective("dpo", temperature=1.0, gama=0.5)
    with pytest.raises(ConfigError, match=r"objective 'sft': unknown hyperparameter\(s\) beta; known: none"):
        get_objective("sft", beta=0.1)


def test_unknown_objective_lists_available():
    with pytest.raises(ConfigError, match=r"unknown objective 'dpoo'; available: aihf, alol, apo_down, .*, xpo"):
        get_objective("dpoo")


def test_alias_has_canonical_name():
    assert get_objective("sigmoid").name == "dpo"


def test_build_objective_from_name_and_mapping(make_batch):
    assert repr(build_objective("hinge")) == "Hinge(beta=0.1)"
    objective = build_objective({"name": "selm", "beta": 0.02, "alpha": 1e-4})
    assert (objective.name, objective.beta, objective.alpha) == ("selm", 0.02, 1e-4)


def test_build_objective_weighted_sum(make_batch):
    batch = make_batch(4)
    combined = build_objective([{"name": "dpo", "beta": 0.2}, {"name": "sft", "weight": 0.2}])
    assert isinstance(combined, WeightedObjective)
    assert combined.name == "dpo+sft"
    assert combined.requires == REF | {"chosen_lengths"}
    out = combined(batch)
    dpo = get_objective("dpo", beta=0.2)(batch)
    sft = get_objective("sft")(batch)
    torch.testing.assert_close(out.losses, 1.0 * dpo.losses + 0.2 * sft.losses, rtol=1e-15, atol=1e-15)
    assert sorted(out.metrics) == sorted({"loss/dpo", "loss/sft", *dpo.metrics, *sft.metrics})
    assert out.metrics["loss/dpo"].item() == pytest.approx(dpo.losses.mean().item(), rel=1e-15)
    assert out.metrics["loss/sft"].item() == pytest.approx(sft.losses.mean().item(), rel=1e-15)
    assert out.metrics["rewards/margins"].item() == dpo.metrics["rewards/margins"].item()


def test_weighted_missing_field_is_reported(make_batch):
    combined = build_objective([{"name": "simpo"}, {"name": "dpo"}])
    with pytest.raises(ConfigError, match="objective 'simpo\\+dpo' needs the field 'reference_chosen_logps'"):
        combined(make_batch(0, only=frozenset(LEN)))


@pytest.mark.parametrize(("spec", "message"), [
    ([{"name": "dpo"}, {"name": "sft", "weight": -1}], "objective 'sft': weight must be >= 0"),
    ([{"name": "dpo"}, {"name": "sft", "wieght": 0.2}], r"objective 'sft': unknown hyperparameter\(s\) wieght"),
    ([{"beta": 0.1}], r"objective\[0\] needs a 'name' key"),
    (["dpo"], r"objective\[0\] must be a mapping"),
    ({"name": "dpo", "weight": 2.0}, "'weight' is only meaningful in a list"),
    ({"name": "dpo", "betta": 0.1}, r"objective 'dpo': unknown hyperparameter\(s\) betta"),
    ([], "objective must be a name, a mapping or a non-empty list"),
    (0.1, "objective must be a name, a mapping or a non-empty list"),
    ("nope", "unknown objective 'nope'"),
])
def test_build_objective_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_objective(spec)


def test_reward_accuracies_by_hand():
    # s_w = [1, 0, −1, −2], s_l = [−1, 0, 0, −3]; β = 0.5 → rewards r_w = [.5, 0, −.5, −1],
    # r_l = [−.5, 0, 0, −1.5]: pairs 0 and 3 are right, the tie (1) counts as wrong.
    batch = PreferenceBatch(
        policy_chosen_logps=torch.tensor([-1.0, -2.0, -3.0, -4.0]),
        policy_rejected_logps=torch.tensor([-3.0, -2.0, -2.0, -5.0]),
        reference_chosen_logps=torch.full((4,), -2.0),
        reference_rejected_logps=torch.full((4,), -2.0),
    )
    metrics = get_objective("dpo", beta=0.5)(batch).metrics
    assert metrics["rewards/accuracies"].item() == 0.5
    assert metrics["rewards/chosen"].item() == -0.25
    assert metrics["rewards/rejected"].item() == -0.5
    assert metrics["rewards/margins"].item() == 0.25
    assert metrics["logps/chosen"].item() == -2.5
    assert metrics["logps/rejected"].item() == -3.0


def test_simpo_rewards_are_length_normalized_policy_logps():
    batch = PreferenceBatch(
        policy_chosen_logps=torch.tensor([-4.0, -9.0]), policy_rejected_logps=torch.tensor([-2.0, -3.0]),
        chosen_lengths=torch.tensor([2, 3]), rejected_lengths=torch.tensor([4, 1]),
    )
    metrics = get_objective("simpo", beta=2.0)(batch).metrics
    # r_w = 2·[−2, −3] = [−4, −6]; r_l = 2·[−0.5, −3] = [−1, −6]: no pair strictly right.
    assert metrics["rewards/chosen"].item() == -5.0
    assert metrics["rewards/rejected"].item() == -3.5
    assert metrics["rewards/accuracies"].item() == 0.0


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_dtype_is_kept_and_metrics_are_detached(name, dtype, make_batch):
    batch = make_batch(0, dtype=dtype, requires_grad=True)
    out = get_objective(name)(batch)
    assert out.losses.dtype == dtype and out.losses.requires_grad
    for key, value in out.metrics.items():
        assert value.dtype == dtype and value.shape == () and not value.requires_grad, key


def test_integer_lengths_keep_float32():
    batch = PreferenceBatch(
        policy_chosen_logps=torch.tensor([-4.0, -9.0]), policy_rejected_logps=torch.tensor([-2.0, -3.0]),
        chosen_lengths=torch.tensor([2, 3]), rejected_lengths=torch.tensor([4, 1], dtype=torch.float64),
    )
    assert get_objective("simpo")(batch).losses.dtype == torch.float32


def test_empty_response_counts_as_one_token():
    batch = PreferenceBatch(
        policy_chosen_logps=torch.tensor([0.0, -3.0]), policy_rejected_logps=torch.tensor([-2.0, -3.0]),
        chosen_lengths=torch.tensor([0, 3]),
    )
    assert get_objective("sft")(batch).losses.tolist() == [0.0, 1.0]


def test_discopop_is_finite_for_very_negative_margins():
    # β·h = −200: e^{200} overflows float32 while σ(h/τ) underflows to 0.
    batch = PreferenceBatch(
        policy_chosen_logps=torch.tensor([-2000.0]), policy_rejected_logps=torch.tensor([0.0]),
        reference_chosen_logps=torch.tensor([0.0]), reference_rejected_logps=torch.tensor([0.0]),
    )
    loss = get_objective("discopop")(batch).losses
    assert loss.item() == pytest.approx(200.0, rel=1e-6)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"reference_chosen_logps has shape \(3, 1\), expected \(3,\)"):
        PreferenceBatch(policy_chosen_logps=torch.zeros(3), policy_rejected_logps=torch.zeros(3),
                        reference_chosen_logps=torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"policy_chosen_logps must have shape \[B\]"):
        PreferenceBatch(policy_chosen_logps=torch.zeros(()), policy_rejected_logps=torch.zeros(()))
