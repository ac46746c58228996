"""Judges: score responses behind one interface (see ``selm.judges.base.Judge``).

Kinds, each built from a config dict with ``build_judge({"kind": ..., **options})``:
``reward_model``, ``pairwise``, ``llm``, ``function``, ``ensemble``, ``vector`` and ``gold``. Heavy
dependencies (torch, transformers, llm_blender) are imported only when a judge that needs them
is built.
"""

from selm.judges.base import ItemFailure, Judge
from selm.judges.ensemble import EnsembleJudge
from selm.judges.function import FunctionJudge
from selm.judges.gold import GoldJudge
from selm.judges.llm import LLMJudge
from selm.judges.pairwise import PairwiseJudge
from selm.judges.registry import JUDGE_KINDS, available_judge_kinds, build_judge, register_judge_kind
from selm.judges.reward_model import RewardModelJudge
from selm.judges.vector import VectorJudge, require_vector_judge

__all__ = [
    "JUDGE_KINDS", "EnsembleJudge", "FunctionJudge", "GoldJudge", "ItemFailure", "Judge", "LLMJudge",
    "PairwiseJudge", "RewardModelJudge", "VectorJudge", "available_judge_kinds", "build_judge", "register_judge_kind",
    "require_vector_judge",
]
