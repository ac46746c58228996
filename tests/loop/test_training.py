"""The round's pairs as trainer input, and a finished training as the round's metrics."""

import pytest
import torch

from selm.artifacts import PairRow
from selm.loop.training import round_train_metrics, tokenized_pairs
from selm.train.diagnostics import GRAD_KEYS
from selm.train.trainer import TrainResult


def _pair(**values):
    return PairRow(2, "p", [1, 2], "a", "b", [3], [4, 5], "y0", [6], 1.0, 0.0, 1.0, values=values)


def test_tokenized_pairs_keep_the_token_ids_and_the_objectives_values():
    plain, valued = tokenized_pairs([_pair(), _pair(label_probs=0.7, online_ids=[[7], [8]], unrelated=1)])
    assert (plain.index, plain.prompt_ids, plain.chosen_ids, plain.rejected_ids, plain.explore_ids) == \
        (0, [1, 2], [3], [4, 5], [6])
    assert plain.online_ids is None and plain.extras == {}
    assert valued.index == 1 and valued.online_ids == [[7], [8]] and valued.extras == {"label_probs": 0.7}


def test_round_train_metrics():
    log = [{"step": 1, "loss": 0.7}, {"step": 2, **dict.fromkeys(GRAD_KEYS, 1.0)},
           {"step": 4, **dict.fromkeys(GRAD_KEYS, 2.0)}]
    result = TrainResult(global_step=4, metrics={"loss": 0.6, "rewards/accuracies": 0.75, "sail/dp_frac": 0.5,
                                                 "tokens_per_s": 900.0, "nonfinite_steps": 1, "time/step_s": 0.1},
                         nonfinite_steps=1, train_seconds=2.0, tokens_per_second=900.0, reference_seconds=0.25,
                         log_history=log)
    before = {"chosen": torch.tensor([-1.0, -2.0]), "rejected": torch.tensor([-1.0, -2.0])}
    after = {"chosen": torch.tensor([-1.5, -1.0]), "rejected": torch.tensor([-2.0, -2.5])}
    m = round_train_metrics(result, before, after)
    assert {k: m[k] for k in ("train/loss", "train/rewards/accuracies", "train/sail/dp_frac")} == \
        {"train/loss": 0.6, "train/rewards/accuracies": 0.75, "train/sail/dp_frac": 0.5}
    assert not {"train/tokens_per_s", "train/time/step_s"} & set(m)  # timings are not round metrics
    assert m["train/steps"] == 4 and m["train/nonfinite_steps"] == 1 and m["time/reference_s"] == 0.25
    assert m["diag/chosen_logp_fell_frac"] == 0.5 and m["diag/rejected_logp_rose_frac"] == 0.0
    assert m["diag/chosen_logp_delta"] == pytest.approx(0.25)
    assert all(m[key] == 1.5 for key in GRAD_KEYS)  # the mean of the round's diagnostics rows
