"""`selm train`: offline preference training from a recipe, end to end.

load config -> model, tokenizer (+ LoRA) -> reference -> data (validate, tokenize, truncate)
-> PreferenceTrainer -> save the model (full weights or a PEFT adapter) in Hugging Face format.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from selm.config import dump_config
from selm.data import load_preference_data, tokenize_preference_pairs
from selm.errors import ConfigError
from selm.logprobs import ReferencePolicy
from selm.modeling.loading import load_causal_lm, load_tokenizer
from selm.modeling.sources import resolve_model_source
from selm.objectives import Objective, build_objective
from selm.train.config import LoraConfig, ModelAndDataConfig, TrainConfig, TrainingArguments
from selm.train.trainer import PreferenceTrainer, TrainResult, latest_checkpoint

logger = logging.getLogger(__name__)


def apply_lora(model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """Wrap ``model`` with PEFT LoRA adapters (only the adapters train)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def build_reference(model: torch.nn.Module, objective: Objective, args: TrainingArguments,
                    explicit_source: str | None, default_source: str, trust_remote_code: bool = False,
                    allow_pickle: bool = False) -> ReferencePolicy | None:
    """π_ref for ``objective``: None if reference-free; the LoRA policy with adapters disabled
    (no second copy); else a frozen model loaded from ``explicit_source`` or the starting model."""
    if not objective.needs_reference:
        if explicit_source is not None:
            raise ConfigError(f"reference_model_name_or_path: objective '{objective.name}' is reference-free "
                              f"and uses no reference model; remove the key")
        return None
    if args.lora is not None and explicit_source is None:
        return ReferencePolicy(model, disable_adapters=True)
    ref = load_causal_lm(explicit_source or default_source, dtype=args.dtype, trust_remote_code=trust_remote_code,
                         allow_pickle=allow_pickle)
    ref.eval().requires_grad_(False)
    return ReferencePolicy(ref)


def save_model_atomically(model: torch.nn.Module, tokenizer: Any, output_dir: Path) -> None:
    """save_pretrained into a temp folder, then move each file into ``output_dir``."""
    tmp = output_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    for file in tmp.iterdir():
        os.replace(file, output_dir / file.name)
    tmp.rmdir()


def make_accelerator(report_to: list[str] | None = None, output_dir: Path | None = None, run_name: str = "selm",
                     config: dict[str, Any] | None = None) -> Any:
    """An Accelerator whose trackers (tensorboard / wandb / trackio) receive the training log.

    Under ``torchrun`` / ``accelerate launch`` it joins the process group (gloo on CPU, where
    ``cpu=True`` keeps it off any GPU); alone it is a single process.
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=report_to or None,
                              project_dir=str(output_dir) if output_dir is not None else None)
    if report_to:
        try:
            accelerator.init_trackers(run_name, config=config)
        except (ImportError, ModuleNotFoundError, ValueError) as exc:
            raise ConfigError(f"train.report_to: {report_to} could not start ({exc}); "
                              f"install the tracker, e.g. pip install -e '.[tensorboard]'") from None
    return accelerator


def split_eval(pairs: list, ratio: float, seed: int) -> tuple[list, list]:
    """Deterministic (train, eval) split holding out ``ratio`` of the pairs."""
    if ratio <= 0:
        return pairs, []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(ratio * len(pairs))))
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def load_train_and_eval_rows(config: ModelAndDataConfig, seed: int) -> tuple[list, list]:
    """The training rows and the held-out rows: ``eval_dataset`` when set, else a seeded
    ``eval_split_ratio`` of ``dataset``."""
    rows = list(load_preference_data(config.dataset, split=config.dataset_split))
    if config.eval_dataset is not None:
        return rows, list(load_preference_data(config.eval_dataset, split=config.eval_dataset_split))
    return split_eval(rows, config.eval_split_ratio, seed)


def run_train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train as the recipe says and save the result to ``config.output_dir``.

    Under ``torchrun`` / ``accelerate launch`` every process runs this; training is data-parallel
    and only the main process writes files.
    """
    args = config.train
    torch.manual_seed(args.seed)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise ConfigError(f"output_dir: '{output_dir}' is not writable")
    objective = build_objective(config.objective)
    accelerator = make_accelerator(args.report_to, output_dir, config.name, config.model_dump(mode="json"))
    main = accelerator.is_main_process
    progress = progress and main

    # A built-in model is built and cached on first use: by the main process alone.
    with accelerator.main_process_first():
        model_source = resolve_model_source(config.model_name_or_path)
        tokenizer_source = (resolve_model_source(config.tokenizer_name_or_path) if config.tokenizer_name_or_path
                            else model_source)
        explicit_reference = (resolve_model_source(config.reference_model_name_or_path)
                              if config.reference_model_name_or_path else None)
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code=config.trust_remote_code)

    train_raw, eval_raw = load_train_and_eval_rows(config, args.seed)
    train_pairs, stats = tokenize_preference_pairs(train_raw, tokenizer, args.max_length, args.max_prompt_length)
    eval_pairs, eval_stats = tokenize_preference_pairs(eval_raw, tokenizer, args.max_length, args.max_prompt_length)
    logger.info("train data: %s", stats.summary())
    if progress:
        print(f"data: {len(train_pairs)} train / {len(eval_pairs)} eval pairs; {stats.summary()}")

    model = load_causal_lm(model_source, dtype=args.dtype, trust_remote_code=config.trust_remote_code,
                           allow_pickle=config.allow_pickle)
    if args.lora is not None:
        model = apply_lora(model, args.lora)
    reference = build_reference(model, objective, args, explicit_reference, model_source,
                                config.trust_remote_code, config.allow_pickle)

    if main:
        (output_dir / "config.yaml").write_text(dump_config(config))
    trainer = PreferenceTrainer(model, objective, args, train_pairs, tokenizer.pad_token_id,
                                reference=reference, eval_pairs=eval_pairs, output_dir=output_dir,
                                accelerator=accelerator, progress=progress)
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if resume:
        print(f"resuming from {checkpoint}" if checkpoint else "no checkpoint found: starting from step 0")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    if main:
        save_model_atomically(trainer.policy, tokenizer, output_dir)
        summary = {"global_step": result.global_step, "nonfinite_steps": result.nonfinite_steps,
                   "train_seconds": result.train_seconds, "tokens_per_second": result.tokens_per_second,
                   "reference_cache_hit": result.reference_cache_hit, **result.metrics}
        (output_dir / "train_results.json").write_text(json.dumps(summary, indent=2))
    # No process returns (and may exit) before the model is on disk for all of them.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result
