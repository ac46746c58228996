"""`selm reward-model train`: Bradley–Terry reward models (and ensembles) from preference pairs.

load config -> tokenizer -> pairs (text rows, optional margin column) -> encode as the
``reward_model`` judge does -> for each ensemble member: seed, optional bootstrap resample,
AutoModelForSequenceClassification(num_labels=1) on the base, AdamW on the Bradley–Terry loss
-> save in Hugging Face format (safetensors). One member is saved in ``output_dir`` itself; an
ensemble in ``output_dir/member-i/`` with the tokenizer and ``ENSEMBLE_FILE`` at the top, so the
same ``{kind: reward_model, path: output_dir}`` judge spec loads either.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selm.config import dump_config
from selm.data.splits import load_train_and_eval_rows
from selm.errors import ConfigError, DataError, ModelLoadError
from selm.judges.reward_model import ENSEMBLE_FILE, encode_for_reward_model
from selm.modeling.loading import load_tokenizer
from selm.modeling.saving import save_model_atomically
from selm.optim import adamw, optimizer_step, transformers_schedule
from selm.progress import progress_bar
from selm.reward_model.config import RewardModelConfig
from selm.reward_model.loss import bradley_terry_loss
from selm.tasks.sources import resolve_model_source


@dataclass
class EncodedPairs:
    """Token ids of P pairs as the reward model reads them, and their margins ([P] or None)."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    margins: list[float] | None

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, rows: list[int]) -> "EncodedPairs":
        return EncodedPairs([self.chosen[i] for i in rows], [self.rejected[i] for i in rows],
                            [self.margins[i] for i in rows] if self.margins is not None else None)


def encode_pairs(rows: Any, tokenizer: Any, config: RewardModelConfig, source: str) -> EncodedPairs:
    """Validated preference rows -> EncodedPairs.

    Raises:
        DataError: a conversational row, or a missing / non-numeric margin; names the row.
    """
    prompts, chosen, rejected, margins = [], [], [], []
    for row in rows:
        if not all(isinstance(x, str) for x in (row.prompt, row.chosen, row.rejected)):
            raise DataError(f"{source}: row {row.index}: reward-model training takes text prompt/chosen/rejected "
                            f"(conversational rows are not supported yet)")
        if config.margin_column is not None:
            value = row.extra.get(config.margin_column)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"{source}: row {row.index}: margin column '{config.margin_column}' "
                                f"must be a finite number, got {value!r}")
            margins.append(float(value))
        prompts.append(row.prompt)
        chosen.append(row.chosen)
        rejected.append(row.rejected)
    encode = lambda responses: encode_for_reward_model(  # noqa: E731
        tokenizer, prompts, responses, config.max_length, use_chat_template=config.use_chat_template)
    return EncodedPairs(encode(chosen), encode(rejected), margins if config.margin_column is not None else None)


def _batch(pairs: EncodedPairs, rows: list[int], pad: int, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Right-padded [2B, T] ids and mask (chosen rows first, then rejected) and [B] margins."""
    seqs = [pairs.chosen[i] for i in rows] + [pairs.rejected[i] for i in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for n, s in enumerate(seqs):
        ids[n, :len(s)] = torch.tensor(s)
        mask[n, :len(s)] = 1
    margins = torch.tensor([pairs.margins[i] for i in rows], device=device) if pairs.margins is not None else None
    return ids.to(device), mask.to(device), margins


def _rewards(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_c, r_r): [B] each, float32, from one forward of the [2B, T] batch."""
    r = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
    b = r.shape[0] // 2
    return r[:b], r[b:]


@torch.no_grad()
def evaluate(model: Any, pairs: EncodedPairs, pad: int, batch_size: int, label_smoothing: float = 0.0
             ) -> dict[str, float]:
    """Preference accuracy (r_c > r_r; ties count as wrong), mean loss and mean reward gap."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = loss = gap = 0.0
    for start in range(0, len(pairs), batch_size):
        rows = list(range(start, min(start + batch_size, len(pairs))))
        ids, mask, margins = _batch(pairs, rows, pad, device)
        r_c, r_r = _rewards(model, ids, mask)
        correct += float((r_c > r_r).sum())
        loss += float(bradley_terry_loss(r_c, r_r, margins, label_smoothing).sum())
        gap += float((r_c - r_r).sum())
    model.train(was_training)
    n = max(len(pairs), 1)
    return {"accuracy": correct / n, "loss": loss / n, "reward_gap": gap / n}


def _load_model(source: str, config: RewardModelConfig, pad_token_id: int, device: torch.device) -> Any:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized" is the point here, not a warning
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=torch.float32, trust_remote_code=config.trust_remote_code,
            use_safetensors=None if config.allow_pickle else True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model_name_or_path: '{config.model_name_or_path}': {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = pad_token_id
    return model.to(device)


def train_member(config: RewardModelConfig, source: str, tokenizer: Any, train: EncodedPairs, evals: EncodedPairs,
                 seed: int, out: Path, progress: bool = True) -> dict[str, float]:
    """Train one reward model with ``seed`` and save it with its tokenizer (and its step log) into ``out``."""
    pad = tokenizer.pad_token_id
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)  # the score head's initialisation
    model = _load_model(source, config, pad, device)
    rng = random.Random(seed)
    if config.bootstrap:
        train = train.subset([rng.randrange(len(train)) for _ in range(len(train))])
    bs = config.per_device_train_batch_size
    steps_per_epoch = math.ceil(len(train) / bs)
    total = max(1, math.ceil(steps_per_epoch * config.num_train_epochs))
    params = list(model.parameters())
    optimizer = adamw(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = transformers_schedule(optimizer, config.lr_scheduler_type, config.warmup_ratio, total)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "train_log.jsonl").open("w")
    model.train()
    order: list[int] = []
    window: list[tuple[int, float, float]] = []
    for step in progress_bar(range(1, total + 1), desc=f"reward model (seed {seed})", disable=not progress):
        if not order:
            order = list(range(len(train)))
            rng.shuffle(order)
        rows, order = order[:bs], order[bs:]
        ids, mask, margins = _batch(train, rows, pad, device)
        r_c, r_r = _rewards(model, ids, mask)
        loss = bradley_terry_loss(r_c, r_r, margins, config.label_smoothing).mean()
        loss.backward()
        optimizer_step(optimizer, scheduler, params, config.max_grad_norm)
        window.append((len(rows), float(loss.detach()), float((r_c > r_r).float().sum())))
        if step % config.logging_steps == 0 or step == total:
            n = sum(w[0] for w in window)
            entry = {"step": step, "loss": sum(w[0] * w[1] for w in window) / n, "accuracy": sum(w[2] for w in window) / n,
                     "learning_rate": scheduler.get_last_lr()[0]}
            if step == total and len(evals):
                entry.update({f"eval/{k}": v for k, v in evaluate(model, evals, pad, config.per_device_eval_batch_size,
                                                                  config.label_smoothing).items()})
            log.write(json.dumps(entry) + "\n")
            window = []
    log.close()
    metrics = {f"train/{k}": v for k, v in evaluate(model, train, pad, config.per_device_eval_batch_size,
                                                     config.label_smoothing).items()}
    if len(evals):
        metrics.update({f"eval/{k}": v for k, v in evaluate(model, evals, pad, config.per_device_eval_batch_size,
                                                            config.label_smoothing).items()})
    save_model_atomically(model, tokenizer, out)
    return metrics


def train_reward_model(config: RewardModelConfig, progress: bool = True) -> dict[str, Any]:
    """Train as the recipe says; returns the summary also written to ``output_dir/train_results.json``.

    The summary has each member's ``train/accuracy``, ``eval/accuracy`` (with held-out data),
    losses and reward gaps, and their means over members under the same keys.
    """
    out = Path(config.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output_dir: '{out}' cannot be created ({exc.strerror})") from None
    source = resolve_model_source(config.model_name_or_path)
    tokenizer = load_tokenizer(resolve_model_source(config.tokenizer_name_or_path, "tokenizer_name_or_path") if config.tokenizer_name_or_path
                               else source, trust_remote_code=config.trust_remote_code,
                               chat_template=config.chat_template)
    train_rows, eval_rows = load_train_and_eval_rows(config.dataset, config.dataset_split, config.eval_dataset,
                                                     config.eval_dataset_split, config.eval_split_ratio, config.seed)
    if not train_rows:
        raise DataError(f"{config.dataset}: no training pairs left")
    train = encode_pairs(train_rows, tokenizer, config, config.dataset)
    evals = encode_pairs(eval_rows, tokenizer, config, config.eval_dataset or config.dataset)
    if progress:
        print(f"data: {len(train)} train / {len(evals)} eval pairs; ensemble of {config.ensemble_size}")
    (out / "config.yaml").write_text(dump_config(config))
    members = []
    for m in range(config.ensemble_size):
        folder = out if config.ensemble_size == 1 else out / f"member-{m}"
        members.append(train_member(config, source, tokenizer, train, evals, config.seed + m, folder, progress))
    if config.ensemble_size > 1:
        tokenizer.save_pretrained(out)
        # Written last: a folder without it is not (yet) a loadable ensemble.
        (out / ENSEMBLE_FILE).write_text(json.dumps({"members": [f"member-{m}" for m in range(config.ensemble_size)]}))
    summary: dict[str, Any] = {key: sum(m[key] for m in members) / len(members) for key in members[0]}
    summary["members"] = members
    (out / "train_results.json").write_text(json.dumps(summary, indent=2))
    return summary
