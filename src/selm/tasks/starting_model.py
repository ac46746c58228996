"""Build (once) and cache a task's starting model: a tiny Llama taught the task's format.

The model plays the role of the SFT model the SELM paper starts from. It is trained with plain
next-token cross-entropy on the task's demonstrations (right format, not the goal), in float32
on the CPU, and saved in HF format (safetensors + tokenizer) under
``<cache root>/models/<task>-<hash>``, where the hash covers the task version and every build
setting. The folder is written under a temporary name and renamed into place, so a killed build
never leaves a half-written model where a later call would pick it up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from selm.cache import cache_root
from selm.errors import ModelLoadError
from selm.io import publish_dir
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.optim import adamw, optimizer_step, warmup_cosine_schedule
from selm.progress import progress_bar

MANIFEST = "selm_starting_model.json"
# Bump when the build procedure changes in a way the settings do not capture.
BUILD_FORMAT = 1
# A build takes well under a minute: an older temporary folder was left by a killed build.
_STALE_TMP_SECONDS = 3600

class DemonstrationTask(Protocol):
    """What a starting-model build needs of a task (``selm.tasks.Task`` has it all)."""

    name: str
    version: int
    eval_pool_size: int

    def sample_prompt(self, rng: random.Random) -> str: ...

    def demonstration(self, prompt: str, rng: random.Random) -> str: ...

    def eval_prompts(self, n: int) -> list[str]: ...



@dataclass(frozen=True)
class StartingModelSettings:
    """Everything that determines the starting model (all of it enters the cache key).

    ``steps × batch_size`` demonstrations are seen once each; the learning rate warms up
    linearly for ``warmup_steps`` and then decays with a cosine to 10 % of its peak. The default
    head size is 32 (64 / 2 heads), the smallest that vLLM's CPU attention kernels accept.
    """

    vocab_size: int = 300
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    steps: int = 400
    batch_size: int = 128
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    tokenizer_corpus_size: int = 2000
    seed: int = 0


def starting_model_dir(task: DemonstrationTask, settings: StartingModelSettings, cache_dir: str | Path | None = None) -> Path:
    """Where the starting model of ``task`` built with ``settings`` lives (built or not)."""
    identity = {"task": task.name, "task_version": task.version, "build_format": BUILD_FORMAT,
                "settings": asdict(settings)}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root(cache_dir) / "models" / f"{task.name}-{key}"


def ensure_starting_model(task: DemonstrationTask, settings: StartingModelSettings, cache_dir: str | Path | None = None,
                          progress: bool = True) -> Path:
    """Return the cached starting model folder, building it first if it is not there."""
    final = starting_model_dir(task, settings, cache_dir)
    if final.is_dir():
        if not (final / MANIFEST).is_file():
            raise ModelLoadError(f"{final} is not a complete starting model (no {MANIFEST}); delete it to rebuild")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(final)
    return publish_dir(final, lambda tmp: build_starting_model(task, settings, tmp, progress), MANIFEST)


def build_starting_model(task: DemonstrationTask, settings: StartingModelSettings, out_dir: Path,
                         progress: bool = True) -> dict[str, Any]:
    """Train the starting model and save it (model, tokenizer, manifest) into ``out_dir``.

    Deterministic given ``settings.seed``. Returns the manifest (settings, final loss, seconds).
    """
    start = time.perf_counter()
    rng = random.Random(f"{task.name}/demonstrations/{settings.seed}")
    n = settings.steps * settings.batch_size
    prompts = _demo_prompts(task, rng, n)
    responses = [task.demonstration(p, rng) for p in prompts]

    tokenizer = build_tokenizer(
        [p + r for p, r in zip(prompts[:settings.tokenizer_corpus_size], responses)],
        vocab_size=settings.vocab_size,
        chat_template=None,  # prompts are plain text; a template would change what the model sees
    )
    model = build_tiny_model(
        len(tokenizer), hidden_size=settings.hidden_size, num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads, num_key_value_heads=settings.num_key_value_heads,
        seed=settings.seed, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    prompt_ids = tokenizer(prompts, add_special_tokens=False).input_ids
    response_ids = tokenizer(responses, add_special_tokens=False).input_ids
    examples = [(p, r + [tokenizer.eos_token_id]) for p, r in zip(prompt_ids, response_ids)]

    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(settings.seed)
        final_loss = _train(model, examples, settings, tokenizer.pad_token_id, progress, task.name)

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {"task": task.name, "task_version": task.version, "build_format": BUILD_FORMAT,
                "settings": asdict(settings), "final_loss": final_loss,
                "build_seconds": round(time.perf_counter() - start, 2)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one intra-op thread, then restore the caller's setting.

    The matrices are tiny (2k × 64), so a second thread buys nothing (measured: 100 steps take
    3.5–3.8 s on one thread, 4.0–7.0 s on two, on a shared 2-core machine), and a fixed thread
    count keeps the float reductions, hence the model, identical on machines with any core count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _demo_prompts(task: DemonstrationTask, rng: random.Random, n: int) -> list[str]:
    """``n`` prompts (repeats allowed) from the training distribution: held-out ones excluded."""
    held_out = set(task.eval_prompts(task.eval_pool_size))
    prompts: list[str] = []
    while len(prompts) < n:
        prompt = task.sample_prompt(rng)
        if prompt not in held_out:
            prompts.append(prompt)
    return prompts


def _train(model: torch.nn.Module, examples: list[tuple[list[int], list[int]]], settings: StartingModelSettings,
           pad_id: int, progress: bool, name: str) -> float:
    """Next-token cross-entropy on response tokens (prompts are random: nothing to learn there).

    Returns the mean loss over the last 10 % of steps (nats per response token).
    """
    params = list(model.parameters())
    optimizer = adamw(params, lr=settings.learning_rate)
    schedule = warmup_cosine_schedule(optimizer, settings.warmup_steps, settings.steps, final_fraction=0.1)
    model.train()
    tail = max(1, settings.steps // 10)
    tail_losses: list[float] = []
    bar = progress_bar(range(settings.steps), desc=f"building the {name} starting model", unit="step",
               disable=not progress)
    for step in bar:
        batch = examples[step * settings.batch_size:(step + 1) * settings.batch_size]
        input_ids, attention_mask, labels = _collate(batch, pad_id)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer_step(optimizer, schedule, params, max_grad_norm=1.0)
        if step >= settings.steps - tail:
            tail_losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return sum(tail_losses) / len(tail_losses)


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] input ids, attention mask, and labels (-100 on prompt and padding)."""
    width = max(len(p) + len(r) for p, r in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (prompt, response) in enumerate(batch):
        ids = prompt + response
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention_mask[row, :len(ids)] = 1
        labels[row, len(prompt):len(ids)] = torch.tensor(response)
    return input_ids, attention_mask, labels


def _remove_stale_builds(final: Path) -> None:
    """Delete temporary folders of the same build left behind by killed processes."""
    for tmp in final.parent.glob(f".{final.name}.*"):
        if time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
            shutil.rmtree(tmp, ignore_errors=True)
