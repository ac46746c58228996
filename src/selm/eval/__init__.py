"""Per-round evaluation metrics (pure functions over responses, scores and log-probs)."""

from selm.eval.metrics import distinct_n, kl_estimate, mean_std, win_rate

__all__ = ["distinct_n", "kl_estimate", "mean_std", "win_rate"]
