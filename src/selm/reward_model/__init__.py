"""Reward-model training: Bradley–Terry models (and ensembles) the ``reward_model`` judge loads."""

from selm.reward_model.config import RewardModelConfig
from selm.reward_model.loss import bradley_terry_loss

__all__ = ["RewardModelConfig", "bradley_terry_loss", "train_reward_model"]


def __getattr__(name: str):
    # The trainer pulls in transformers: imported on first use only.
    if name == "train_reward_model":
        from selm.reward_model.train import train_reward_model

        return train_reward_model
    raise AttributeError(name)
