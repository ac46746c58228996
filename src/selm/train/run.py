"""`selm train`: offline preference training from a recipe, end to end.

load config -> model, tokenizer (+ LoRA) -> reference -> data (validate, tokenize, truncate)
-> FPO's sparse autoencoder (if the objective reads features) -> PreferenceTrainer -> save the model
(full weights or a PEFT adapter) in Hugging Face format.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from selm.config import dump_config
from selm.data import tokenize_preference_pairs
from selm.data.splits import load_train_and_eval_rows
from selm.distributed import make_accelerator
from selm.errors import ConfigError
from selm.modeling.loading import load_causal_lm, load_tokenizer
from selm.modeling.lora import apply_lora
from selm.modeling.saving import save_model_atomically
from selm.tasks.sources import resolve_model_source
from selm.train.config import (
    TrainConfig,
)
from selm.train.reference import build_reference
from selm.train.sae import feature_probe
from selm.train.trainer import PreferenceTrainer, TrainResult, latest_checkpoint

logger = logging.getLogger(__name__)


# Files of a finished `selm train` in its output_dir: a second job there would replace them.
TRAINED_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "train_results.json")


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output_dir that cannot be written, or that holds a trained model (unless
    ``resume`` or ``overwrite``). Creates nothing: the folder is made when the job starts."""
    existing = next((p for p in (output_dir, *output_dir.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ConfigError(f"output_dir: '{output_dir}' is not writable")
    held = [name for name in TRAINED_FILES if (output_dir / name).exists()]
    if held and not (resume or overwrite):
        raise ConfigError(f"output_dir: '{output_dir}' already holds a trained model ({held[0]}); "
                          f"pass --overwrite to replace it, --resume to continue it, or choose another output_dir")


def run_train(config: TrainConfig, resume: bool = False, progress: bool = True, overwrite: bool = False) -> TrainResult:
    """Train as the recipe says and save the result to ``config.output_dir``.

    Under ``torchrun`` / ``accelerate launch`` every process runs this; training is data-parallel
    and only the main process writes files. Nothing is written (not even the folder) unless the
    job gets as far as its first training step's setup: a bad model, data or objective leaves no
    trace; an existing trained model is replaced only with ``overwrite``.
    """
    args = config.train
    torch.manual_seed(args.seed)
    output_dir = Path(config.output_dir)
    check_output_dir(output_dir, resume, overwrite)
    objective = config.built_objective
    accelerator = make_accelerator(args.report_to, output_dir, config.name, config.model_dump(mode="json"))
    main = accelerator.is_main_process
    progress = progress and main

    # A built-in model is built and cached on first use: by the main process alone.
    with accelerator.main_process_first():
        model_source = resolve_model_source(config.model_name_or_path)
        tokenizer_source = (resolve_model_source(config.tokenizer_name_or_path, "tokenizer_name_or_path") if config.tokenizer_name_or_path
                            else model_source)
        explicit_reference = (resolve_model_source(config.reference_model_name_or_path, "reference_model_name_or_path")
                              if config.reference_model_name_or_path else None)
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code=config.trust_remote_code,
                               chat_template=config.chat_template)

    train_raw, eval_raw = load_train_and_eval_rows(config.dataset, config.dataset_split, config.eval_dataset,
                                                  config.eval_dataset_split, config.eval_split_ratio, args.seed)
    train_pairs, stats = tokenize_preference_pairs(train_raw, tokenizer, args.max_length, args.max_prompt_length)
    eval_pairs, eval_stats = tokenize_preference_pairs(eval_raw, tokenizer, args.max_length, args.max_prompt_length)
    logger.info("train data: %s", stats.summary())
    if progress:
        print(f"data: {len(train_pairs)} train / {len(eval_pairs)} eval pairs; {stats.summary()}")

    model = load_causal_lm(model_source, dtype=args.dtype, trust_remote_code=config.trust_remote_code,
                           allow_pickle=config.allow_pickle)
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    reference = build_reference(model, objective, args, explicit_reference, model_source,
                                config.trust_remote_code, config.allow_pickle)
    features = None
    if objective.reads_features:
        # Trained (or found in the cache) by the main process; the others then read its cache entry.
        sequences = [(p.prompt_ids, ids) for p in train_pairs for ids in (p.chosen_ids, p.rejected_ids)]
        with accelerator.main_process_first():
            features, _ = feature_probe(config.sae, model.to(accelerator.device), sequences, tokenizer.pad_token_id,
                                        device=accelerator.device, progress=progress)

    trainer = PreferenceTrainer(model, objective, args, train_pairs, tokenizer.pad_token_id,
                                reference=reference, eval_pairs=eval_pairs, output_dir=output_dir,
                                accelerator=accelerator, progress=progress, features=features)
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(dump_config(config))
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if resume:
        print(f"resuming from {checkpoint}" if checkpoint else "no checkpoint found: starting from step 0")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    consolidated = trainer.policy_state_dict()
    if main:
        save_model_atomically(trainer.policy, tokenizer, output_dir, state_dict=consolidated)
        summary = {"global_step": result.global_step, "nonfinite_steps": result.nonfinite_steps,
                   "train_seconds": result.train_seconds, "tokens_per_second": result.tokens_per_second,
                   "reference_cache_hit": result.reference_cache_hit, **result.metrics}
        (output_dir / "train_results.json").write_text(json.dumps(summary, indent=2))
    # No process returns (and may exit) before the model is on disk for all of them.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result
