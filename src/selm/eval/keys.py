"""The names of the metrics, defined once: the round metrics of metrics.jsonl, the trainer's step
log, and the headline keys that the trainer, the command line and the summary line show.

The report, the round loop and the trainer read these names from here. Objectives name their own
step metrics (TRL's ``rewards/...``, ``logps/...``, or ``sail/...`` and the like); a round's
metrics row carries every step metric of its training as ``train/<name>``.
"""

from __future__ import annotations

# ----- held-out evaluation: one value per round ----------------------------------------------

ROUND = "round"
REWARD_MEAN = "reward_mean"  # the eval judge's mean reward (None for a pairwise judge)
REWARD_STD = "reward_std"
GOLD_REWARD_MEAN = "gold_reward_mean"  # the task's gold reward (only with a built-in task)
GOLD_REWARD_STD = "gold_reward_std"
KL = "kl"  # Monte-Carlo KL(π_k ‖ π0), nats per response
WIN_RATE_VS_INITIAL = "win_rate_vs_initial"
WIN_RATE_VS_PREVIOUS = "win_rate_vs_previous"
LENGTH_MEAN = "length_mean"  # tokens
EOS_RATE = "eos_rate"
DISTINCT_2 = "distinct_2"
BEST_OF_N = "eval/best_of_n"  # N of the best-of-N baseline
BEST_OF_N_REWARD = "eval/best_of_n_reward"
BEST_OF_N_GOLD_REWARD = "eval/best_of_n_gold_reward"
LINEAR_ALIGNMENT_REWARD = "eval/linear_alignment_reward"  # the linear-alignment baseline's eval-judge reward
LINEAR_ALIGNMENT_GOLD_REWARD = "eval/linear_alignment_gold_reward"
REFUSAL_RATE = "eval/refusal_rate"  # fraction of held-out responses that refuse (eval.refusal_rate)
# Unseen extrapolation (eval.unseen_mass; selm.eval.extrapolation), on the round's training prompts:
UNSEEN_MASS_CHANGE = "eval/unseen_mass_change"  # Δ mass on responses in no training example of the round
UNSEEN_BEST_MASS_CHANGE = "eval/unseen_best_mass_change"  # Δ mass on the task's ideal responses among them
UNSEEN_MASS_PROMPTS = "eval/unseen_mass_prompts"  # the training prompts both average over
PEAK_MEMORY_GB = "peak_memory_gb"

# ----- pairing (loop/pair_rules.py writes them) ----------------------------------------------

PROMPTS_TRUNCATED = "prompts/truncated"  # training prompts cut to the prompt budget (train.max_length)
PAIRS_COUNT = "pairs/count"
ROLLOUTS_COUNT = "rollouts/count"
PAIRS_TIE_RATE = "pairs/tie_rate"
PAIRS_MARGIN_MEAN = "pairs/margin_mean"

# ----- the trainer's step log (TRL's names) and the round's training metrics ------------------

LOSS = "loss"
REWARD_ACCURACIES = "rewards/accuracies"
REWARD_MARGINS = "rewards/margins"
REWARD_CHOSEN = "rewards/chosen"
REWARD_REJECTED = "rewards/rejected"
STEP = "step"
TOKENS_PER_S = "tokens_per_s"  # the step log's throughput: a timing, not a round metric
NONFINITE_STEPS = "nonfinite_steps"  # a running count, reported on its own per round


def eval_key(name: str) -> str:
    """The step-log key of a metric on the trainer's eval pairs: ``eval/<name>``."""
    return f"eval/{name}"


def train_key(name: str) -> str:
    """The round metric of a training step metric: ``train/<name>`` (its mean over the round's log)."""
    return f"train/{name}"


TRAIN_STEPS = train_key("steps")
TRAIN_NONFINITE_STEPS = train_key(NONFINITE_STEPS)

# Shown on the training progress bar and log lines, in this order.
STEP_HEADLINE = (LOSS, REWARD_ACCURACIES, REWARD_MARGINS, eval_key(REWARD_ACCURACIES))
# Shown by `selm train` when it finishes.
TRAIN_HEADLINE = (*STEP_HEADLINE, eval_key(LOSS))

# ----- diagnostics (train/diagnostics.py writes them) -----------------------------------------

CHOSEN_LOGP_FELL_FRAC = "diag/chosen_logp_fell_frac"
REJECTED_LOGP_ROSE_FRAC = "diag/rejected_logp_rose_frac"
BOTH_LOGP_FELL_FRAC = "diag/both_logp_fell_frac"
GRAD_COSINE = "diag/grad_cosine"
GRAD_RATIO = "diag/grad_ratio"

# ----- timings: every key that differs between two runs of the same seed ----------------------


def time_key(phase: str) -> str:
    """Wall-clock seconds of one phase of the round: ``time/<phase>_s``."""
    return f"time/{phase}_s"


def tokens_per_s_key(phase: str) -> str:
    """Throughput of one phase of the round: ``tokens_per_s/<phase>``."""
    return f"tokens_per_s/{phase}"


def is_time_key(key: str) -> bool:
    """True for a per-phase wall-clock metric, ``time/<phase>_s``."""
    return key.startswith("time/") and key.endswith("_s")


REFERENCE_TIME = time_key("reference")  # the trainer's reference log-prob pass
TIMING_PREFIXES = ("time/", "tokens_per_s/", "peak_memory")

# ----- judge reliability (eval/reliability.py writes them) -------------------------------------

RELIABILITY_R2 = "r2"  # PF-PPO's R²: gold score on judge reward, fitted through reward-bin means
RELIABILITY_R2_RESPONSES = "r2_responses"  # the same linear fit with every response as a point
RELIABILITY_BINS = "bins"  # the number of bin means the R² was fitted through


def reliability_key(statistic: str, filter_name: str = "none") -> str:
    """A judge-reliability metric on the responses one rollout filter keeps (``none``: all of them):
    ``reliability/<statistic>_<filter>``, e.g. ``reliability/r2_best_worst``."""
    return f"reliability/{statistic}_{filter_name}"
