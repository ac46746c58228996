"""``reward_model`` judge: a sequence-classification reward model with its own tokenizer.

The reward model never shares the policy's tokenizer or chat template (a classic bug: trl#1979,
trl#6951). Each (prompt, response) is rendered with the reward model's chat template as a
[user, assistant] conversation when its tokenizer has one, else as ``prompt + response``; then
tokenised with the reward model's tokenizer, truncated to ``max_length``, and scored in batches
under ``torch.no_grad``. Spec::

    {kind: reward_model, path: sfairXC/FsfairX-LLaMA3-RM-v0.1, max_length: 2048, batch_size: 8}

Keys: ``path`` (local folder or hub id), ``tokenizer`` (default: ``path``), ``max_length``,
``batch_size``, ``truncation_side`` (``right`` cuts the end of long responses, ``left`` the
start of long prompts), ``use_chat_template``, ``label_index`` (which logit is the reward when
the head has several), ``device`` (``auto``: cuda if available), ``dtype`` (``auto``: float32 on
CPU, bfloat16 on a GPU that supports it), ``trust_remote_code`` (off by default) and
``allow_pickle`` (off by default: only safetensors weights are loaded).

An ensemble trained by ``selm reward-model train`` (folders ``member-0``, ``member-1``, ... under
``path``, see ``ENSEMBLE_FILE``) is loaded whole: each item's score is ``mean − ensemble_k · std``
over the members (std with ddof=0; ``ensemble_k: 0`` is the plain mean).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from selm.config import StrictModel
from selm.errors import ModelLoadError
from selm.judges.base import ItemFailure, Judge
from selm.judges.registry import register_judge_kind

logger = logging.getLogger(__name__)

# Written by `selm reward-model train` beside the member folders of an ensemble.
ENSEMBLE_FILE = "selm_reward_ensemble.json"


def render_for_reward_model(tokenizer: Any, prompts: list[str], responses: list[str],
                            use_chat_template: bool = True) -> list[str]:
    """The texts a reward model reads: a [user, assistant] chat when ``tokenizer`` has a template
    (and ``use_chat_template``), else ``prompt + response``. Training and judging both use this."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                              tokenize=False)
                for p, r in zip(prompts, responses)]
    return [p + r for p, r in zip(prompts, responses)]


def encode_for_reward_model(tokenizer: Any, prompts: list[str], responses: list[str], max_length: int,
                            truncation_side: str = "right", use_chat_template: bool = True) -> list[list[int]]:
    """Token ids of ``render_for_reward_model``'s texts, cut to ``max_length`` on ``truncation_side``."""
    templated = use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    # A chat template writes its own special tokens (BOS included); adding them again would
    # duplicate BOS. Plain concatenation gets the tokenizer's usual special tokens.
    ids = tokenizer(render_for_reward_model(tokenizer, prompts, responses, use_chat_template),
                    add_special_tokens=not templated)["input_ids"]
    return [x[:max_length] for x in ids] if truncation_side == "right" else [x[-max_length:] for x in ids]


def ensemble_members(path: str) -> list[str]:
    """The member folders of an ensemble saved at ``path``, or ``[path]`` for a single model."""
    import json

    folder = Path(path).expanduser()
    if not (folder / ENSEMBLE_FILE).is_file():
        return [path]
    members = json.loads((folder / ENSEMBLE_FILE).read_text())["members"]
    return [str(folder / name) for name in members]


@register_judge_kind
class RewardModelJudge(Judge):
    """Pointwise judge over an ``AutoModelForSequenceClassification`` reward model."""

    kind = "reward_model"

    class Options(StrictModel):
        """Spec keys of the ``reward_model`` judge."""

        path: str
        tokenizer: str | None = None
        max_length: int = Field(2048, gt=0)
        batch_size: int = Field(8, gt=0)
        truncation_side: Literal["right", "left"] = "right"
        use_chat_template: bool = True
        label_index: int | None = Field(None, ge=0)
        device: str = "auto"
        dtype: str = "auto"
        trust_remote_code: bool = False
        allow_pickle: bool = False
        ensemble_k: float = Field(0.0, ge=0, description="ensembles: score = mean − k·std over members")

    def __init__(self, options: Options):
        super().__init__(options)
        import torch

        from selm.modeling.loading import load_tokenizer, resolve_dtype

        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if options.device == "auto" else options.device
        )
        try:
            self.tokenizer = load_tokenizer(options.tokenizer or options.path,
                                            trust_remote_code=options.trust_remote_code)
            dtype = resolve_dtype(options.dtype, self.device)
        except ModelLoadError as exc:
            raise ModelLoadError(f"judge 'reward_model': {exc}") from None
        self.models = [self._load_model(dtype, member) for member in ensemble_members(options.path)]
        self.model = self.models[0]
        num_labels = self.model.config.num_labels
        if options.label_index is None and num_labels != 1:
            raise ModelLoadError(f"judge {self.name}: the model has {num_labels} output labels; "
                                 f"set label_index to the one that is the reward")
        if options.label_index is not None and options.label_index >= num_labels:
            raise ModelLoadError(f"judge {self.name}: label_index {options.label_index} but the model "
                                 f"has {num_labels} output labels")
        # Sequence-classification heads pool at the last non-pad token and need to know the pad id.
        for model in self.models:
            if model.config.pad_token_id is None:
                model.config.pad_token_id = self.tokenizer.pad_token_id

    @property
    def label(self) -> str:
        return self.options.path

    def _load_model(self, dtype: Any, path: str) -> Any:
        from transformers import AutoModelForSequenceClassification

        local = Path(path).expanduser()
        source = str(local) if local.exists() else path
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                dtype=dtype,
                trust_remote_code=self.options.trust_remote_code,
                use_safetensors=None if self.options.allow_pickle else True,
            )
        except (OSError, ValueError) as exc:
            hint = "" if self.options.allow_pickle else " (only safetensors weights load unless allow_pickle: true)"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"judge 'reward_model': model '{path}': {reason}{hint}") from None
        return model.to(self.device).eval()

    def render(self, prompts: list[str], responses: list[str]) -> list[str]:
        """The exact texts the reward model reads, one per (prompt, response)."""
        return render_for_reward_model(self.tokenizer, prompts, responses, self.options.use_chat_template)

    def encode(self, prompts: list[str], responses: list[str]) -> list[list[int]]:
        """Token ids the reward model scores (rendered, tokenised, truncated to ``max_length``)."""
        o = self.options
        full = encode_for_reward_model(self.tokenizer, prompts, responses, 10**9, o.truncation_side, o.use_chat_template)
        truncated = sum(len(x) > o.max_length for x in full)
        if truncated:
            logger.warning("judge %s: %d of %d texts truncated to max_length=%d (%s side)",
                           self.name, truncated, len(full), o.max_length, o.truncation_side)
        return [x[:o.max_length] if o.truncation_side == "right" else x[-o.max_length:] for x in full]

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[Any]:
        import torch

        ids = self.encode(prompts, responses)
        for index, seq in enumerate(ids):
            if not seq:
                raise ItemFailure(index, "renders to zero tokens")
        # Batches of similar length waste less compute on padding; results go back in input order.
        order = sorted(range(len(ids)), key=lambda n: len(ids[n]))
        scores: list[float] = [0.0] * len(ids)
        pad = self.tokenizer.pad_token_id
        label = self.options.label_index or 0
        size = self.options.batch_size
        with torch.no_grad():
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                width = max(len(ids[n]) for n in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, n in enumerate(chunk):
                    input_ids[row, : len(ids[n])] = torch.tensor(ids[n])
                    mask[row, : len(ids[n])] = 1
                member_scores = torch.stack([
                    model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits[:, label]
                    .double() for model in self.models])
                combined = member_scores.mean(0) - self.options.ensemble_k * member_scores.std(0, correction=0)
                for row, n in enumerate(chunk):
                    scores[n] = float(combined[row])
        return scores
