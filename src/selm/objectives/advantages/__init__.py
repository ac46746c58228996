"""Advantage estimators, registered by name: GRPO, Dr. GRPO, RLOO, REINFORCE++(-baseline), GAE.

See ``selm.objectives.advantages.base`` for the contract and the conventions every estimator
shares (groups, KL in the reward, where the judge's reward sits).
"""

from __future__ import annotations

# Importing a module registers its estimators.
from selm.objectives.advantages import gae, grpo, reinforce_pp, rloo  # noqa: F401
from selm.objectives.advantages.base import (
    ADVANTAGE_ESTIMATORS,
    AdvantageEstimator,
    AdvantageInputs,
    Advantages,
    available_advantage_estimators,
    build_advantage_estimator,
    get_advantage_estimator,
)
from selm.objectives.advantages.win_rate import win_rate_rewards

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageEstimator",
    "AdvantageInputs",
    "Advantages",
    "available_advantage_estimators",
    "build_advantage_estimator",
    "get_advantage_estimator",
    "win_rate_rewards",
]
