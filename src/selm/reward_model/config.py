"""The recipe of `selm reward-model train`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selm.train.config import ModelAndDataConfig


class RewardModelConfig(ModelAndDataConfig):
    """A Bradley–Terry reward model (or an ensemble of them) trained on preference pairs (text rows).

    The model is ``AutoModelForSequenceClassification`` with one output on top of any causal-LM
    base; texts are rendered exactly as the ``reward_model`` judge renders them, so the saved
    folder is a judge: ``{kind: reward_model, path: <output_dir>}``.
    """

    name: str = "reward-model"
    margin_column: str | None = Field(None, description="column with a per-pair margin m: loss −log σ(r_c − r_r − m)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    use_chat_template: bool = Field(True, description="render as the judge does (must match the judge's setting)")
    max_length: int = Field(512, gt=1)
    ensemble_size: int = Field(1, gt=0, description="members trained with seeds seed, seed+1, ...")
    bootstrap: bool = Field(False, description="each member trains on a bootstrap resample of the pairs")
    learning_rate: float = Field(1e-5, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    per_device_train_batch_size: int = Field(8, gt=0)
    per_device_eval_batch_size: int = Field(16, gt=0)
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    logging_steps: int = Field(10, gt=0)
    seed: int = 42
    output_dir: str = "outputs/reward-model"
