"""FPO's sparse autoencoder in an online run: one for every round, kept in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selm.data import TokenizedPair
from selm.engine import FeatureProbe
from selm.loop.config import RunConfig
from selm.modeling.sae import CONFIG_FILE, load_sparse_autoencoder, save_sparse_autoencoder
from selm.rundir import RunDir
from selm.train.sae import feature_probe


class RunAutoencoder:
    """The autoencoder every round of a run reads features with, so that the feature space the
    constraint compares in stays the same while the policy and the reference move.

    The first round that trains builds it (``sae`` of the config: loaded from ``sae.path``, or
    trained on that round's start policy, π0, over its pairs, through selm's cache) and copies it
    to the run's ``cache/sae``; later rounds and a resumed run load that copy.
    """

    def __init__(self, config: RunConfig, run_dir: RunDir, accelerator: Any, progress: bool):
        self.config = config
        self.folder: Path = run_dir.path / "cache" / "sae"
        self.accelerator = accelerator
        self.progress = progress
        self._probe: FeatureProbe | None = None

    def probe(self, policy: torch.nn.Module, pairs: list[TokenizedPair], pad_token_id: int) -> FeatureProbe:
        """The run's autoencoder on the accelerator's device, built from ``policy`` (on that device)
        and ``pairs``' sequences when the run has none yet."""
        if self._probe is None:
            # The main process builds and writes it; the others then load its copy.
            with self.accelerator.main_process_first():
                if not (self.folder / CONFIG_FILE).is_file():
                    sequences = [(p.prompt_ids, ids) for p in pairs for ids in (p.chosen_ids, p.rejected_ids)]
                    built, _ = feature_probe(self.config.sae, policy, sequences, pad_token_id,
                                             device=self.accelerator.device, progress=self.progress)
                    if self.accelerator.is_main_process:
                        save_sparse_autoencoder(built.sae, self.folder, built.layer)
                sae, layer = load_sparse_autoencoder(self.folder, key=f"the run's autoencoder {self.folder}")
            self._probe = FeatureProbe(sae.requires_grad_(False).to(self.accelerator.device), layer)
        return self._probe
