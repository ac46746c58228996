"""The recipe of `selm reward-model train`."""

from __future__ import annotations

from pydantic import Field

from selm.train.config import ModelAndDataConfig, SchedulerType


class RewardModelConfig(ModelAndDataConfig):
    """A Bradley–Terry reward model (or an ensemble of them) trained on preference pairs (text rows).

    The model is ``AutoModelForSequenceClassification`` with one output on top of any causal-LM
    base; texts are rendered exactly as the ``reward_model`` judge renders them, so the saved
    folder is a judge: ``{kind: reward_model, path: <output_dir>}``.
    """

    name: str = Field("reward-model", description="job name (logs)")
    margin_column: str | None = Field(None, description="column with a per-pair margin m: loss −log σ(r_c − r_r − m)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="ε: loss −(1−ε)·log σ(Δ) − ε·log σ(−Δ) "
                                                                  "(conservative Bradley–Terry)")
    use_chat_template: bool = Field(True, description="render as the judge does (must match the judge's setting)")
    max_length: int = Field(512, gt=1, description="longest rendered prompt + response in tokens; longer ones "
                                                   "are cut")
    ensemble_size: int = Field(1, gt=0, description="members trained with seeds seed, seed+1, ...")
    bootstrap: bool = Field(False, description="each member trains on a bootstrap resample of the pairs")
    learning_rate: float = Field(1e-5, gt=0, description="peak learning rate of AdamW")
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the training pairs (fractions allowed)")
    per_device_train_batch_size: int = Field(8, gt=0, description="training pairs per optimizer step")
    per_device_eval_batch_size: int = Field(16, gt=0, description="pairs per forward when evaluating")
    lr_scheduler_type: SchedulerType = Field("linear", description="learning-rate schedule after the warm-up")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of the steps with a linear learning-rate "
                                                           "warm-up from 0")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay of the ≥ 2-D weights "
                                                       "(not biases or norms)")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient's global L2 norm to this; "
                                                               "null: no clipping")
    logging_steps: int = Field(10, gt=0, description="log (and evaluate on the eval pairs) every k steps")
    seed: int = Field(42, description="seed of the data order and the head's initialisation (member i: seed + i)")
    output_dir: str = Field("outputs/reward-model", description="where the reward model (or the ensemble's "
                                                                "member folders) is saved")
