"""Per-round evaluation: statistics (``metrics``), the metric names (``keys``), a round's metrics row
(``round_metrics``), its printed summary (``summary``) and confidence intervals (``intervals``)."""

from selm.eval.metrics import distinct_n, kl_estimate, mean_std, win_rate

__all__ = ["distinct_n", "kl_estimate", "mean_std", "win_rate"]
