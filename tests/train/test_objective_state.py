"""An objective's training state (LCPO's reliability η) survives a checkpoint and resume."""

import json
import shutil

import pytest

from selm.engine import ReferencePolicy
from selm.modeling.tiny import build_tiny_model
from selm.objectives import build_objective
from selm.train.config import TrainingArguments
from selm.train.trainer import PreferenceTrainer

SPEC = {"name": "lcpo", "base": {"name": "dpo", "beta": 0.5}, "reliability": 0.9, "momentum": 0.3}


def trainer(output_dir, pairs):
    args = TrainingArguments(learning_rate=1e-2, per_device_train_batch_size=2, warmup_ratio=0.0,
                             lr_scheduler_type="constant", logging_steps=1, max_grad_norm=None, seed=0,
                             max_steps=4, save_steps=2, precompute_reference=False)
    return PreferenceTrainer(build_tiny_model(300), build_objective(SPEC), args, pairs, pad_token_id=0,
                             reference=ReferencePolicy(build_tiny_model(300, seed=1).requires_grad_(False)), output_dir=output_dir, progress=False)


def test_resumed_lcpo_reaches_the_same_reliability_as_an_uninterrupted_run(tmp_path, make_pairs):
    pairs = make_pairs(8)
    whole = trainer(tmp_path / "whole", pairs)
    whole.train()
    saved = json.loads((tmp_path / "whole" / "checkpoint-2" / "trainer_state.json").read_text())["objective"]
    # η moved in the first two steps and again in the last two: the checkpoint's value matters.
    assert saved["reliability"] != SPEC["reliability"] != whole.objective.reliability != saved["reliability"]

    shutil.copytree(tmp_path / "whole" / "checkpoint-2", tmp_path / "cut" / "checkpoint-2")
    resumed = trainer(tmp_path / "cut", pairs)
    assert resumed.objective.reliability == SPEC["reliability"]  # a fresh objective, as in a new process
    resumed.train(resume_from_checkpoint=tmp_path / "cut" / "checkpoint-2")
    assert resumed.objective.reliability == pytest.approx(whole.objective.reliability, rel=1e-9, abs=0)
