"""How a step is timed and memory is read, the same way for every system.

A step is the interval between two consecutive optimizer-step completions, caught by torch's
global optimizer hook: it holds everything a training loop does per step (collation, forward,
backward, clipping, the optimizer, logging) and needs no change to the loop being measured, ours
or TRL's. The first ``warmup`` steps are dropped (the first one also holds set-up: reference
log-probs, lazy allocations), and the median of the rest is reported.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StepClock:
    """Timestamps (``time.perf_counter`` seconds) of every optimizer step taken inside ``running()``."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.started: float | None = None

    @contextmanager
    def running(self) -> Iterator["StepClock"]:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        handle = register_optimizer_step_post_hook(lambda *_: self.stamps.append(time.perf_counter()))
        self.started = time.perf_counter()
        try:
            yield self
        finally:
            handle.remove()

    def step_seconds(self, warmup: int) -> list[float]:
        """Durations of the steps after the first ``warmup`` ones (seconds).

        Raises:
            RuntimeError: fewer than ``warmup + 1`` steps were taken (a loop skipped its optimizer).
        """
        if self.started is None or len(self.stamps) < warmup + 1:
            raise RuntimeError(f"expected at least {warmup + 1} optimizer steps, saw {len(self.stamps)}")
        edges = [self.started, *self.stamps]
        return [b - a for a, b in zip(edges[warmup:], edges[warmup + 1:])]


def median(values: list[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    return float(statistics.median(values))


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
