"""The systems under test: each trains the same model on the same batch for a few steps.

- ``selm``: the real ``PreferenceTrainer.train()`` (DPO, reference log-probs precomputed, the
  chunked log-prob engine), full fine-tuning or LoRA, padded or padding-free.
- ``trl``: TRL's ``DPOTrainer`` with its best settings on this hardware: precomputed reference
  log-probs, fp32 (its default is bf16, ~5× slower on an AVX2 CPU), no activation checkpointing
  (its default is on), the Trainer's fused AdamW.
- ``naive``: DPO as first written: full [N, T, V] logits for the policy and a reference forward
  every step, padded batch. The floor that shows where the gains come from.
- ``sft``: one plain ``model(ids, labels=...)`` step on the same tokens: one forward and one
  backward, the least a preference step can cost.

Every system uses AdamW (fused, no weight decay), lr 1e-6 constant, gradient clipping at 1.0, DPO with β = 0.1,
and float32 weights. Each runs in its own process (see ``worker``), so its peak memory is its own.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from selm.bench.measure import StepClock, median, peak_rss_bytes
from selm.bench.workloads import (
    PAD_ID,
    SHAPES,
    LengthProfile,
    build_model,
    ids_to_text,
    make_pairs,
    num_parameters,
    sequence_lengths,
    word_tokenizer,
)
from selm.optim import adamw, optimizer_step

SYSTEMS = ("selm", "trl", "naive", "sft")
LEARNING_RATE = 1e-6
BETA = 0.1
LORA_R, LORA_ALPHA = 16, 32


@dataclass(frozen=True)
class SystemSpec:
    """One measurement: which system, on which model shape, with which options.

    Attributes:
        system: one of ``SYSTEMS``.
        shape: a key of ``workloads.SHAPES``.
        lora: train LoRA adapters (r 16, alpha 32, all linear layers) instead of every weight.
        padding_free: selm only: pack the batch into one row without padding.
        batch_pairs: preference pairs per step (2 sequences each).
        warmup: steps run before timing starts.
        steps: timed steps.
        threads: torch intra-op threads (0: torch's default).
    """

    system: str
    shape: str
    lora: bool = False
    padding_free: bool = False
    batch_pairs: int = 2
    warmup: int = 1
    steps: int = 3
    threads: int = 0

    @property
    def label(self) -> str:
        extras = [x for x, on in (("lora", self.lora), ("padding-free", self.padding_free)) if on]
        return "+".join([self.system, *extras])


@dataclass
class SystemResult:
    """What one system measured; times in seconds, memory in bytes."""

    spec: SystemSpec
    step_seconds: list[float]
    tokens_per_step: int
    padded_tokens_per_step: int
    parameters: int
    trainable_parameters: int
    peak_rss_bytes: int
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def median_step_seconds(self) -> float:
        return median(self.step_seconds)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.median_step_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.spec.label, "median_step_seconds": self.median_step_seconds,
                "tokens_per_second": self.tokens_per_second}


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def _lora_config():
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def _run_selm(spec: SystemSpec, model: torch.nn.Module, pairs: list, clock: StepClock) -> dict[str, Any]:
    from selm.engine import ReferencePolicy
    from selm.modeling.lora import apply_lora
    from selm.objectives import get_objective
    from selm.train.config import LoraConfig, TrainingArguments
    from selm.train.trainer import PreferenceTrainer

    options: dict[str, Any] = {}
    if "padding_free" in TrainingArguments.model_fields:
        options["padding_free"] = spec.padding_free
    elif spec.padding_free:
        raise RuntimeError("this selm has no TrainingArguments.padding_free")
    with tempfile.TemporaryDirectory(prefix="selm-bench-") as cache:
        args = TrainingArguments(
            learning_rate=LEARNING_RATE, max_steps=spec.warmup + spec.steps,
            per_device_train_batch_size=spec.batch_pairs, lr_scheduler_type="constant", warmup_ratio=0.0,
            reference_cache_dir=cache, **options)
        if spec.lora:
            model = apply_lora(model, LoraConfig(r=LORA_R, alpha=LORA_ALPHA))
            reference = ReferencePolicy(model, disable_adapters=True)
        else:
            # As `selm train` does: a frozen copy, dropped by the trainer once its log-probs are cached.
            reference = ReferencePolicy(copy.deepcopy(model).eval().requires_grad_(False))
        trainer = PreferenceTrainer(model, get_objective("dpo", beta=BETA), args, pairs, PAD_ID,
                                    reference=reference, progress=False)
        del reference
        with clock.running():
            trainer.train()
    # The trainer falls back to padding when the model cannot keep packed sequences apart.
    packing = getattr(trainer, "packing", None)
    return {"trainable_parameters": _trainable(model), "packed": packing is not None,
            "packing": None if packing is None else str(packing)}


def _dpo_step_naive(policy: torch.nn.Module, reference: torch.nn.Module, batch, objective, b: int) -> torch.Tensor:
    from selm.engine import naive_sequence_logps
    from selm.objectives import PreferenceBatch

    logps = naive_sequence_logps(policy, batch)
    with torch.no_grad():
        ref_logps = naive_sequence_logps(reference, batch)
    out = objective(PreferenceBatch(policy_chosen_logps=logps[:b], policy_rejected_logps=logps[b:],
                                    reference_chosen_logps=ref_logps[:b], reference_rejected_logps=ref_logps[b:]))
    return out.losses.mean()


def _run_plain_loop(spec: SystemSpec, model: torch.nn.Module, pairs: list, clock: StepClock) -> dict[str, Any]:
    """The naive DPO loop or the SFT loop: collate once, then step the same batch."""
    from selm.data import collate_preference_batch
    from selm.objectives import get_objective

    batch = collate_preference_batch(pairs, PAD_ID)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if spec.system == "naive" else None
    objective = get_objective("dpo", beta=BETA)
    labels = batch.input_ids.masked_fill(~batch.response_mask, -100)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=LEARNING_RATE, fused_device=params[0].device)
    model.train()
    with clock.running():
        for _ in range(spec.warmup + spec.steps):
            if reference is not None:
                loss = _dpo_step_naive(model, reference, batch, objective, len(pairs))
            else:
                loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids, labels=labels, use_cache=False).loss
            loss.backward()
            optimizer_step(optimizer, None, params, max_grad_norm=1.0)
    return {"trainable_parameters": _trainable(model)}


def _run_trl(spec: SystemSpec, model: torch.nn.Module, pairs: list, clock: StepClock) -> dict[str, Any]:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    shape = SHAPES[spec.shape]
    data = Dataset.from_dict({
        "prompt": [ids_to_text(p.prompt_ids) for p in pairs],
        "chosen": [" " + ids_to_text(p.chosen_ids) for p in pairs],
        "rejected": [" " + ids_to_text(p.rejected_ids) for p in pairs],
    })
    with tempfile.TemporaryDirectory(prefix="selm-bench-trl-") as out:
        config = DPOConfig(
            output_dir=out, per_device_train_batch_size=spec.batch_pairs, max_steps=spec.warmup + spec.steps,
            learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, beta=BETA,
            max_grad_norm=1.0, bf16=False, activation_checkpointing=False, use_cpu=True,
            precompute_ref_log_probs=True, max_length=1024, report_to="none", save_strategy="no",
            logging_steps=10_000, disable_tqdm=True, dataloader_num_workers=0, seed=0)
        trainer = DPOTrainer(model=model, args=config, train_dataset=data, processing_class=word_tokenizer(shape.vocab_size),
                             peft_config=_lora_config() if spec.lora else None)
        tokens = int(sum(len(r["prompt_ids"]) + len(r[k]) for r in trainer.train_dataset for k in ("chosen_ids", "rejected_ids")))
        if tokens != sum(sequence_lengths(pairs)):
            raise RuntimeError(f"TRL tokenized {tokens} tokens, selm has {sum(sequence_lengths(pairs))}")
        with clock.running():
            trainer.train()
        checkpointing = bool(getattr(trainer.model, "is_gradient_checkpointing", False))
        return {"trainable_parameters": _trainable(trainer.model), "optimizer": type(trainer.optimizer.optimizer).__name__
                if hasattr(trainer.optimizer, "optimizer") else type(trainer.optimizer).__name__,
                "fused_adamw": bool(trainer.optimizer.param_groups[0].get("fused")), "activation_checkpointing": checkpointing}


def run_system(spec: SystemSpec) -> SystemResult:
    """Build the model and batch of ``spec``, train ``warmup + steps`` steps and time them."""
    if spec.system not in SYSTEMS:
        raise ValueError(f"unknown system {spec.system!r}; available: {', '.join(SYSTEMS)}")
    if spec.padding_free and spec.system != "selm":
        raise ValueError("padding_free applies to the selm system only")
    if spec.lora and spec.system in ("naive", "sft"):
        raise ValueError(f"the {spec.system} system trains every weight (no LoRA)")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    shape = SHAPES[spec.shape]
    model = build_model(shape)
    parameters = num_parameters(model)
    pairs = make_pairs(spec.batch_pairs, shape.vocab_size, LengthProfile())
    lengths = sequence_lengths(pairs)
    clock = StepClock()
    runner = {"selm": _run_selm, "trl": _run_trl}.get(spec.system, _run_plain_loop)
    notes = runner(spec, model, pairs, clock)
    trainable = notes.pop("trainable_parameters")
    return SystemResult(spec=spec, step_seconds=clock.step_seconds(spec.warmup), tokens_per_step=sum(lengths),
                        padded_tokens_per_step=len(lengths) * max(lengths), parameters=parameters,
                        trainable_parameters=trainable, peak_rss_bytes=peak_rss_bytes(), notes=notes)
