"""Every registered objective against an independent plain-math float64 computation.

The references below use Python's ``math`` on one example at a time; they share nothing with
selm's code. Hyperparameters differ from the defaults so that a dropped hyperparameter shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from selm.objectives import available_objectives, get_objective

SEEDS = (0, 1, 2)
TOL = 1e-10


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# Row keys: pw/pl policy chosen/rejected, rw/rl reference, nw/nl lengths, pe/re policy/reference
# explore, kw/kl chosen/rejected sequential KL.
def s_w(r: dict[str, float]) -> float:
    return r["pw"] - r["rw"]


def s_l(r: dict[str, float]) -> float:
    return r["pl"] - r["rl"]


def h(r: dict[str, float]) -> float:
    return s_w(r) - s_l(r)


def dpo(r, beta, label_smoothing=0.0):
    z = beta * h(r)
    return -(1 - label_smoothing) * logsig(z) - label_smoothing * logsig(-z)


def robust(r, beta, label_smoothing):
    z = beta * h(r)
    return (-(1 - label_smoothing) * logsig(z) + label_smoothing * logsig(-z)) / (1 - 2 * label_smoothing)


def ipo(r, beta):
    return (s_w(r) / r["nw"] - s_l(r) / r["nl"] - 1 / (2 * beta)) ** 2


def hinge(r, beta):
    return max(0.0, 1 - beta * h(r))


def simpo(r, beta, gamma, label_smoothing):
    z = beta * (r["pw"] / r["nw"] - r["pl"] / r["nl"]) - gamma
    return -(1 - label_smoothing) * logsig(z) - label_smoothing * logsig(-z)


def selm(r, beta, alpha):
    return -logsig(beta * h(r)) + alpha * beta * (r["pe"] - r["re"])


def xpo(r, beta, alpha):
    return -logsig(beta * h(r)) + alpha * r["pe"]


def tdpo1(r, beta):
    return -logsig(beta * (h(r) - (r["kl"] - r["kw"])))


def tdpo2(r, beta, alpha):
    return -logsig(beta * (h(r) - alpha * (r["kl"] - r["kw"])))


def sft(r):
    return -r["pw"] / r["nw"]


def sigmoid_norm(r, beta):
    return -logsig(beta * (s_w(r) / r["nw"] - s_l(r) / r["nl"]))


def nca_pair(r, beta):
    return -logsig(beta * s_w(r)) - 0.5 * logsig(-beta * s_w(r)) - 0.5 * logsig(-beta * s_l(r))


def bco_pair(r, beta):
    return -logsig(beta * s_w(r)) - logsig(-beta * s_l(r))


def sppo_hard(r, beta):
    return (s_w(r) - 1 / (2 * beta)) ** 2 + (s_l(r) + 1 / (2 * beta)) ** 2


def apo_zero(r, beta):
    return 1 - sig(beta * s_w(r)) + sig(beta * s_l(r))


def apo_down(r, beta):
    return sig(beta * s_w(r)) + 1 - sig(beta * h(r))


def exo_pair(r, beta, label_smoothing):
    z = beta * h(r)
    return (sig(z) * (logsig(z) - math.log(1 - label_smoothing))
            + sig(-z) * (logsig(-z) - math.log(label_smoothing)))


def normalized_margin(r, beta):
    m = (r["pw"] - r["rw"]) / r["gw"] - (r["pl"] - r["rl"]) / r["gl"]
    return -logsig(beta * m)


def discopop(r, beta, tau):
    z = beta * h(r)
    m = sig(z / tau)
    return (1 - m) * -logsig(z) + m * math.exp(-z)


# name -> (hyperparameters, reference loss of one row)
REFERENCE: dict[str, tuple[dict[str, float], Callable[..., float]]] = {
    "dpo": ({"beta": 0.2, "label_smoothing": 0.15}, dpo),
    "sigmoid": ({"beta": 0.3}, dpo),
    "robust": ({"beta": 0.2, "label_smoothing": 0.2}, robust),
    "ipo": ({"beta": 0.4}, ipo),
    "hinge": ({"beta": 0.25}, hinge),
    "simpo": ({"beta": 2.5, "gamma": 0.3, "label_smoothing": 0.1}, simpo),
    "selm": ({"beta": 0.05, "alpha": 0.02}, selm),
    "xpo": ({"beta": 0.2, "alpha": 3e-3}, xpo),
    "tdpo1": ({"beta": 0.15}, tdpo1),
    "tdpo2": ({"beta": 0.15, "alpha": 0.7}, tdpo2),
    "sft": ({}, sft),
    "sigmoid_norm": ({"beta": 3.0}, sigmoid_norm),
    "nca_pair": ({"beta": 0.2}, nca_pair),
    "bco_pair": ({"beta": 0.2}, bco_pair),
    "sppo_hard": ({"beta": 0.3}, sppo_hard),
    "apo_zero": ({"beta": 0.2}, apo_zero),
    "apo_down": ({"beta": 0.2}, apo_down),
    "exo_pair": ({"beta": 0.2, "label_smoothing": 0.05}, exo_pair),
    "discopop": ({"beta": 0.2, "tau": 0.3}, discopop),
    "normalized_margin": ({"beta": 2.0}, normalized_margin),
}

ROW_KEYS = {
    "pw": "policy_chosen_logps", "pl": "policy_rejected_logps",
    "rw": "reference_chosen_logps", "rl": "reference_rejected_logps",
    "nw": "chosen_lengths", "nl": "rejected_lengths",
    "pe": "policy_explore_logps", "re": "reference_explore_logps",
    "kw": "chosen_seq_kl", "kl": "rejected_seq_kl",
    "gw": "chosen_grad_norms", "gl": "rejected_grad_norms",
}


def rows(batch) -> list[dict[str, float]]:
    columns = {short: getattr(batch, name).tolist() for short, name in ROW_KEYS.items()}
    return [{k: v[i] for k, v in columns.items()} for i in range(batch.batch_size)]


# Objectives over per-pair data fields (routes, soft labels, advantages, online samples) or with
# stochastic / stateful parts; each has its own plain-math test file (tests/objectives/test_<name>.py).
OWN_TEST_FILE = {"sail", "vpo", "hypo", "osp", "spce", "lcpo", "alol", "cpl", "spac", "aihf", "fpo"}


def test_every_registered_objective_has_a_reference():
    assert sorted(set(REFERENCE) | OWN_TEST_FILE) == available_objectives("PreferenceBatch")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_losses_match_plain_math(name, seed, make_batch):
    hyperparameters, reference = REFERENCE[name]
    batch = make_batch(seed)
    out = get_objective(name, **hyperparameters)(batch)
    expected = [reference(r, **hyperparameters) for r in rows(batch)]
    assert out.losses.shape == (7,)
    assert out.losses.dtype == torch.float64
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=TOL, atol=TOL)


def test_hinge_cases_cover_both_sides_of_the_kink(make_batch):
    # Guards the hinge reference test against inputs that never reach the flat part.
    beta = REFERENCE["hinge"][0]["beta"]
    margins = [beta * h(r) for seed in SEEDS for r in rows(make_batch(seed))]
    assert sum(m > 1 for m in margins) >= 3 and sum(m < 1 for m in margins) >= 3


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def expected_metrics(name: str, hyperparameters: dict[str, float], rs: list[dict[str, float]]) -> dict[str, float]:
    """TRL-named metrics of ``name`` in plain math."""
    metrics = {"logps/chosen": mean([r["pw"] for r in rs]), "logps/rejected": mean([r["pl"] for r in rs])}
    if name == "sft":
        return metrics
    beta = hyperparameters["beta"]
    if name == "simpo":
        chosen = [beta * r["pw"] / r["nw"] for r in rs]
        rejected = [beta * r["pl"] / r["nl"] for r in rs]
    else:
        chosen = [beta * s_w(r) for r in rs]
        rejected = [beta * s_l(r) for r in rs]
    metrics.update({
        "rewards/chosen": mean(chosen),
        "rewards/rejected": mean(rejected),
        "rewards/margins": mean([c - j for c, j in zip(chosen, rejected, strict=True)]),
        "rewards/accuracies": mean([float(c > j) for c, j in zip(chosen, rejected, strict=True)]),
    })
    if name == "selm":
        metrics["logps/explore"] = mean([r["pe"] for r in rs])
        metrics["loss/optimism"] = mean([hyperparameters["alpha"] * beta * (r["pe"] - r["re"]) for r in rs])
    if name == "xpo":
        metrics["logps/explore"] = mean([r["pe"] for r in rs])
        metrics["loss/exploration"] = mean([hyperparameters["alpha"] * r["pe"] for r in rs])
    if name in ("tdpo1", "tdpo2"):
        metrics["kl/chosen"] = mean([r["kw"] for r in rs])
        metrics["kl/rejected"] = mean([r["kl"] for r in rs])
        metrics["kl/margin"] = mean([r["kl"] - r["kw"] for r in rs])
    if name == "normalized_margin":
        metrics["normalized_margin/margin"] = mean([s_w(r) / r["gw"] - s_l(r) / r["gl"] for r in rs])
    return metrics


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_metrics_match_plain_math(name, seed, make_batch):
    hyperparameters = REFERENCE[name][0]
    batch = make_batch(seed)
    metrics = get_objective(name, **hyperparameters)(batch).metrics
    expected = expected_metrics(name, hyperparameters, rows(batch))
    assert sorted(metrics) == sorted(expected)
    for key, value in expected.items():
        assert value == pytest.approx(metrics[key].item(), rel=TOL, abs=TOL), key
        assert metrics[key].shape == ()
