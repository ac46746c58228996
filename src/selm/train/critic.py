"""PPO's critic as a separate model: a reward model's decoder and score head, one value per state.

The value head on the policy (``selm.modeling.value_head``) shares the policy's trunk; this critic
has its own, initialised from a Bradley–Terry reward model (``AutoModelForSequenceClassification``
with one output), as in OpenRLHF and TRL's PPOTrainer. It runs its decoder over the same tokens as
the policy and reads the hidden state at position t−1 for the value of the state before response
token t, the positions the log-prob engine scores.
"""

from __future__ import annotations

from pathlib import Path

import torch

from selm.engine import AnySequenceBatch
from selm.errors import UserError
from selm.modeling.loading import load_sequence_classifier
from selm.modeling.value_head import FILE as VALUE_HEAD_FILE
from selm.modeling.value_head import load_value_head, save_value_head

FOLDER = "critic"


class ValueModel(torch.nn.Module):
    """(hidden, batch) -> values [M] of the M response tokens of ``batch``, reward units.

    Args:
        model: a sequence-classification model with one output and a linear ``score`` head
            (Llama, Gemma, Qwen, Mistral, ... in transformers).
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        head = getattr(model, "score", None)
        if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
            raise UserError(f"rollouts.critic_model: {type(model).__name__} has no one-output linear 'score' head; "
                            f"a critic is initialised from a reward model (selm reward-model train)")
        self.model = model

    def forward(self, hidden: torch.Tensor, batch: AnySequenceBatch) -> torch.Tensor:
        """``hidden`` (the policy's) is unused: the critic runs its own decoder over ``batch``."""
        out = self.model.base_model(**batch.decoder_inputs(), use_cache=False)
        states = out[0] if isinstance(out, tuple) else out.last_hidden_state
        predicting = states[:, :-1][batch.response_mask[:, 1:]]
        values = self.model.score(predicting).squeeze(-1)
        return values.to(torch.promote_types(values.dtype, torch.float32))


def load_value_model(path: str | Path, dtype: str = "auto") -> ValueModel:
    """A critic from a reward-model folder (or a critic saved by a previous round)."""
    return ValueModel(load_sequence_classifier(str(path), dtype=dtype))


def save_critic(critic: torch.nn.Module, folder: Path) -> None:
    """Write a critic into ``folder`` (a round's policy folder or a checkpoint being built): a value
    head as ``value_head.safetensors``, a value model as the folder ``critic/``."""
    if isinstance(critic, ValueModel):
        critic.model.save_pretrained(Path(folder) / FOLDER, safe_serialization=True)
    else:
        save_value_head(critic, folder)


def restore_critic(critic: torch.nn.Module, folder: Path) -> None:
    """Load the weights ``save_critic`` wrote in ``folder`` into ``critic``, in place."""
    from safetensors.torch import load_file

    if isinstance(critic, ValueModel):
        weights = {}
        for file in sorted((Path(folder) / FOLDER).glob("*.safetensors")):
            weights.update(load_file(str(file)))
        critic.model.load_state_dict(weights, strict=False)
    else:
        critic.load_state_dict(load_file(str(Path(folder) / VALUE_HEAD_FILE)))


def saved_critic(folder: Path, hidden_size: int, dtype: str = "auto") -> torch.nn.Module | None:
    """The critic a round saved beside its policy in ``folder``, or None where it saved none."""
    if (Path(folder) / FOLDER).is_dir():
        return load_value_model(Path(folder) / FOLDER, dtype=dtype)
    return load_value_head(folder, hidden_size)
