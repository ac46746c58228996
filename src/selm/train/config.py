"""Typed training configuration (names follow transformers' TrainingArguments where they exist)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from selm.config import StrictModel
from selm.modeling.lora import LoraConfig


class TrainingArguments(StrictModel):
    """How to optimise one preference-training job (an offline `selm train` or one online round)."""

    learning_rate: float = Field(1e-6, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="optimizer steps; overrides num_train_epochs when > 0")
    per_device_train_batch_size: int = Field(4, gt=0)
    per_device_eval_batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    gradient_checkpointing: bool = False
    lora: LoraConfig | None = None
    precompute_reference: bool = Field(True, description="reference log-probs once, before training")
    reference_cache_dir: str | None = Field(None, description="default: $SELM_CACHE_DIR/reference_logps")
    max_length: int = Field(1024, gt=1)
    max_prompt_length: int | None = Field(None, gt=0)
    chunk_size: int = Field(1024, gt=0, description="response positions per output-layer chunk")
    padding_free: bool = Field(
        True, description="pack each micro-batch's sequences without pad tokens (training, eval and the "
                          "reference precompute); same log-probs as padding up to float rounding. Checked "
                          "on the model first: falls back to padding, with a warning, if it cannot keep "
                          "packed sequences apart")
    group_by_length: bool = Field(
        False, description="batch pairs of similar length together (seeded windows, still shuffled): "
                           "less padding or packing filler per micro-batch; changes the data order")
    logging_steps: int = Field(1, gt=0)
    eval_steps: int | None = Field(None, gt=0)
    save_steps: int | None = Field(None, gt=0)
    save_total_limit: int = Field(2, gt=0)
    seed: int = 42
    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(default_factory=list)
    max_nonfinite_steps: int = Field(5, gt=0, description="stop after this many non-finite losses in a row")
    diagnostics_steps: int | None = Field(
        None, gt=0, description="every k steps, log gradient-entanglement diagnostics (diag/grad_*) "
                                "on a fixed probe set of training pairs; costs 2 backwards per probe pair")
    diagnostics_pairs: int = Field(16, gt=0, description="probe pairs: the first N training pairs")

    @model_validator(mode="after")
    def _prompt_fits(self) -> "TrainingArguments":
        if self.max_prompt_length is not None and self.max_prompt_length >= self.max_length:
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be < max_length ({self.max_length})")
        return self


def _objective_builds(value: Any) -> Any:
    """Build the objective once at validation time, so a bad name or hyperparameter is a config error."""
    from selm.errors import ConfigError
    from selm.objectives import build_objective

    try:
        build_objective(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


ObjectiveSpec = Annotated[str | dict[str, Any] | list[dict[str, Any]], AfterValidator(_objective_builds)]


class ModelAndDataConfig(StrictModel):
    """The model and the preference data a training recipe starts from (`selm train`, `selm reward-model train`)."""

    model_name_or_path: str
    tokenizer_name_or_path: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    dataset: str = Field(..., description="JSONL/Parquet/CSV file, local dataset folder or hub id")
    dataset_split: str = "train"
    eval_dataset: str | None = None
    eval_dataset_split: str = "test"
    eval_split_ratio: float = Field(0.0, ge=0, lt=1, description="hold out this fraction when eval_dataset is unset")


class TrainConfig(ModelAndDataConfig):
    """The recipe of `selm train`: model, data, objective and training arguments."""

    name: str = "selm-train"
    reference_model_name_or_path: str | None = Field(None, description="default: the starting model")
    objective: ObjectiveSpec = "dpo"
    output_dir: str = "outputs/selm-train"
    train: TrainingArguments = Field(default_factory=TrainingArguments)
