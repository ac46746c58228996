"""`selm bench`: selm vs TRL vs a naive DPO loop vs an SFT step on the same work (docs/performance.md)."""

from selm.bench.run import run_bench

__all__ = ["run_bench"]
