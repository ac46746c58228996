"""The run's models: the policy at the end of each round, and the reference each round trains against.

One policy is in memory at a time. :meth:`RoundPolicies.policy` hands out round k's weights for
reading (sampling, scoring, evaluation) and keeps them cached; :meth:`RoundPolicies.for_training`
hands them out to be changed in place and drops them from the cache, and
:meth:`RoundPolicies.save` writes the trained weights as round k's and caches them as round k. The
cache is only ever filled by a load or a save, so it cannot hold weights under a wrong round.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from selm.engine import ReferencePolicy, unwrap_causal_lm
from selm.errors import UserError
from selm.io import atomic_write_bytes, replace_dir_atomically
from selm.loop.config import RunConfig
from selm.loop.seeds import derived_seed
from selm.modeling.loading import load_causal_lm, model_fingerprint
from selm.modeling.lora import apply_lora
from selm.modeling.soup import load_soup_member, soup_model
from selm.modeling.value_head import ValueHead
from selm.rundir import RunDir
from selm.tasks.sources import resolve_model_source
from selm.train.critic import load_value_model, save_critic, saved_critic

EMA_FILE = "reference_ema.safetensors"


def ema_state(previous: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor],
              decay: float) -> dict[str, torch.Tensor]:
    """d·previous + (1−d)·current for every tensor of ``current`` that ``previous`` has (any shapes;
    ``previous`` is cast to each current tensor's dtype and device)."""
    return {name: decay * previous[name].to(t) + (1 - decay) * t for name, t in current.items() if name in previous}


class RoundPolicies:
    """The policy at the end of round k (round 0: π0), saved under ``rounds/NN/policy``, and the references.

    Args:
        config: the run config (``lora``, ``train.dtype``, ``reference``, ...).
        model_source: the folder of π0 (after any warm-up).
        tokenizer: saved beside each full-weight policy.
        run_dir: the run directory.
        device: where the models live.
        is_main: only the main process writes.
        live_reference: the objective needs the reference at every step (not only precomputed).
    """

    def __init__(self, config: RunConfig, model_source: str, tokenizer: Any, run_dir: RunDir,
                 device: torch.device | str, is_main: bool, live_reference: bool):
        self.config = config
        self.model_source = model_source
        self.tokenizer = tokenizer
        self.run_dir = run_dir
        self.device = device
        self.is_main = is_main
        self.live_reference = live_reference
        # The model in memory, and the round whose weights it holds (None while it is being trained).
        self._model: torch.nn.Module | None = None
        self._round: int | None = None
        self._fingerprint: str | None = None  # of the model in memory, while it holds round _round
        self._initial: torch.nn.Module | None = None
        self._soup: torch.nn.Module | None = None
        self._frozen: tuple[int, torch.nn.Module] | None = None

    def path(self, k: int) -> Path:
        """``rounds/NN/policy``: round k's saved weights (a PEFT adapter with LoRA)."""
        return self.run_dir.round(k).file("policy")

    def saved_path(self, k: int) -> Path | None:
        """Round k's saved folder; None for π0 (round 0 saves none)."""
        return self.path(k) if k > 0 else None

    def policy(self, k: int) -> torch.nn.Module:
        """The policy at the end of round k, to read and not to change (see :meth:`for_training`)."""
        if self._round != k or self._model is None:
            self._model, self._fingerprint = None, None  # free the old weights before loading the new ones
            self._model, self._round = self._load(k), k
        return self._model

    def fingerprint(self, k: int) -> str:
        """``model_fingerprint`` of round k's policy, hashed once while it is the model in memory
        (a round reads it to stamp its samples, check them before training, and in its manifest)."""
        model = self.policy(k)
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(model)
        return self._fingerprint

    def for_training(self, k: int) -> torch.nn.Module:
        """Round k's weights, to be trained in place; the cache no longer counts them as round k."""
        model = self.policy(k)
        self._round, self._fingerprint = None, None
        return model

    def save(self, k: int, model: torch.nn.Module, critic: torch.nn.Module | None = None,
             state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write ``model`` (and PPO's critic) as round k's policy (main process) and keep it in
        memory as round k. With ``state_dict`` (a sharded model's consolidated weights) those are
        written, and round k is loaded from the folder when next asked for."""
        if self.is_main:
            def build(folder: Path) -> None:
                model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
                if self.config.lora is None:
                    self.tokenizer.save_pretrained(folder)
                if critic is not None:
                    save_critic(critic, folder)

            replace_dir_atomically(self.path(k), build)
        self._model, self._round = (model, k) if state_dict is None else (None, None)
        self._fingerprint = None

    def critic(self, k: int, policy: torch.nn.Module) -> torch.nn.Module:
        """PPO's critic at the end of round k (saved with its policy); where none was saved (round 0):
        a value model initialised from ``rollouts.critic_model``, else a zero-initialised value
        head on ``policy``'s trunk."""
        c = self.config
        lm = unwrap_causal_lm(policy)
        saved = saved_critic(self.path(k), lm.config.hidden_size, dtype=c.train.dtype) if k > 0 else None
        if saved is None and c.rollouts.critic_model is not None:
            saved = load_value_model(resolve_model_source(c.rollouts.critic_model, "rollouts.critic_model"), dtype=c.train.dtype)
            if saved.model.config.vocab_size != lm.config.vocab_size:
                raise UserError(f"rollouts.critic_model: its vocabulary ({saved.model.config.vocab_size} tokens) is "
                                f"not the policy's ({lm.config.vocab_size}); the critic reads the policy's tokens")
        return (saved if saved is not None else ValueHead(lm.config.hidden_size)).to(self.device)

    def _load(self, k: int) -> torch.nn.Module:
        c = self.config
        if c.lora is None and k > 0:
            model = load_causal_lm(str(self.path(k)), dtype=c.train.dtype, allow_pickle=False)
        else:
            model = load_causal_lm(self.model_source, dtype=c.train.dtype, trust_remote_code=c.trust_remote_code,
                                   allow_pickle=c.allow_pickle)
            if c.lora is not None:
                torch.manual_seed(derived_seed(c.seed, 0, "lora"))
                if k == 0:
                    model = apply_lora(model, c.lora)
                else:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, self.path(k), is_trainable=True)
        return model.to(self.device)

    def initial_reference(self) -> ReferencePolicy:
        """π0 as a reference: the LoRA policy in memory (whatever its round) with adapters disabled,
        or a frozen copy of π0, loaded once."""
        if self.config.lora is not None:
            return ReferencePolicy(self._model if self._model is not None else self.policy(0), disable_adapters=True)
        if self._initial is None:
            c = self.config
            self._initial = load_causal_lm(self.model_source, dtype=c.train.dtype, trust_remote_code=c.trust_remote_code,
                                           allow_pickle=c.allow_pickle).eval().requires_grad_(False).to(self.device)
        return ReferencePolicy(self._initial)

    def frozen_round_policy(self, k: int) -> ReferencePolicy:
        """Round k's saved policy as a fixed reference (MPO's RL stage: the DPO stage's policy),
        loaded once; its LoRA adapters, if any, stay active."""
        if self._frozen is None or self._frozen[0] != k:
            self._frozen = (k, self._load(k).eval().requires_grad_(False))
        return ReferencePolicy(self._frozen[1])

    def soup_reference(self) -> torch.nn.Module:
        """SALSA's reference: the configured models averaged in weight space (LoRA adapters merged
        first), frozen, built once. Models of different shapes are refused (ConfigError)."""
        if self._soup is None:
            c = self.config
            spec = c.reference
            members = [load_soup_member(resolve_model_source(source, "reference.soup"), dtype=c.train.dtype,
                                        trust_remote_code=c.trust_remote_code, allow_pickle=c.allow_pickle)
                       for source in spec.soup]
            self._soup = soup_model(members, spec.resolved_weights).eval().requires_grad_(False).to(self.device)
        return self._soup

    def reference_for_round(self, k: int, policy: torch.nn.Module) -> ReferencePolicy | None:
        """π_ref of round k as configured; ``policy`` holds the round-start weights π_{k−1}."""
        if self.config.mpo_stage(k) == "rl":
            return self.frozen_round_policy(self.config.mpo.dpo_rounds)
        mode = self.config.reference_mode
        if mode == "none":
            return None
        if mode == "soup":
            return ReferencePolicy(self.soup_reference())
        if mode == "initial":
            return self.initial_reference()
        if mode == "round_start":
            # Reference log-probs are precomputed before the first step, while the policy still
            # holds the round-start weights: no copy is needed unless the objective needs the
            # reference live at every step (TDPO's per-token KL).
            if self.live_reference or not self.config.train.precompute_reference:
                return ReferencePolicy(copy.deepcopy(policy).eval().requires_grad_(False))
            return ReferencePolicy(policy)
        return ReferencePolicy(self._ema_reference(k, policy))

    def _ema_reference(self, k: int, policy: torch.nn.Module) -> torch.nn.Module:
        """π_ref,k = d·π_ref,k−1 + (1−d)·π_{k−1}, with π_ref,1 = π0; saved per round for resume."""
        from safetensors.torch import load_file, save

        path = self.run_dir.round(k).file(EMA_FILE)
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
        if path.is_file():
            ref.load_state_dict(load_file(path), strict=False)
            return ref
        if k > 1:
            previous = load_file(self.run_dir.round(k - 1).file(EMA_FILE))
            ref.load_state_dict(ema_state(previous, ref.state_dict(), self.config.reference_ema_decay), strict=False)
        if self.is_main:
            atomic_write_bytes(path, save({n: t.detach().cpu().contiguous() for n, t in ref.state_dict().items()}))
        return ref
