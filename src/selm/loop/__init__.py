"""The online round loop: phases, run directory, manifests, resume."""

from selm.loop.config import RunConfig
from selm.loop.run import OnlineRun, resume_run, start_run

__all__ = ["OnlineRun", "RunConfig", "resume_run", "start_run"]
