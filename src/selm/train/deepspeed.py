"""DeepSpeed ZeRO-2 / ZeRO-3 under selm's trainers: the engine, its step, consolidation, checkpoints.

On CPU, ``Accelerator(cpu=True)`` ignores a DeepSpeed launch and runs plain DDP (and
``cpu=False`` stalled here in DeepSpeed's set-up, which JIT-compiles a C++ op on CPU). selm
therefore calls ``deepspeed.initialize`` itself, on CPU (gloo, DeepSpeed's CPU accelerator) and GPU
alike, on the already joined process group, as it shards with FSDP2 itself, and keeps Accelerate
for devices, processes and the rest.

What stays selm's: the forward (the :class:`~selm.engine.SequenceStatsModel` is the engine's
module, so every forward, the no-grad ones too, goes through its ZeRO-3 hooks), the loss and its
exact scaling over micro-batches and processes, AdamW with its two weight-decay groups (DeepSpeed
wraps it), the learning-rate schedule (stepped by selm, also on skipped steps). DeepSpeed owns the
gradient reduction (every backward), clipping (``gradient_clipping``) and the step. The caller owns
the accumulation boundary (``managed_gradient_accumulation: false``): a step's micro-batch count
varies (a short last batch), which DeepSpeed's counter could not follow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from selm.engine import SequenceStatsModel
from selm.errors import ConfigError

# The folder of a checkpoint that holds DeepSpeed's own checkpoint (one optimizer shard per process).
DEEPSPEED_STATE = "deepspeed"
_TAG = "state"
STAGES = (2, 3)
# Keys selm sets from train.* (a JSON config may leave them out or say "auto").
_FROM_ARGS = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping")


def requested_deepspeed(setting: int | str | None) -> int | str | None:
    """The ZeRO stage (2, 3) or JSON config path to run with: ``train.deepspeed``, else an
    ``accelerate launch`` with a DeepSpeed config (its config file, else its ZeRO stage); None."""
    if setting is not None:
        return setting
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return None
    if os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        return os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"]
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))


def deepspeed_config(setting: int | str, args: Any, dtype: torch.dtype) -> dict[str, Any]:
    """DeepSpeed's config for ``setting`` (a ZeRO stage or a JSON file) and selm's training arguments.

    From a file: "auto" (or absent) batch size, accumulation and clipping take ``train.*``; an
    explicit value that differs, an ``optimizer`` / ``scheduler`` section that is not all "auto"
    (selm's AdamW and schedule are used), or a stage other than 2 and 3 is a ConfigError naming the key.
    """
    wanted = {"train_micro_batch_size_per_gpu": args.per_device_train_batch_size,
              "gradient_accumulation_steps": args.gradient_accumulation_steps,
              "gradient_clipping": args.max_grad_norm or 0.0}
    if isinstance(setting, int):
        config: dict[str, Any] = {"zero_optimization": {"stage": setting}}
        where = f"train.deepspeed={setting}"
    else:
        where = f"train.deepspeed: {setting}"
        try:
            config = json.loads(Path(setting).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{where}: not a readable DeepSpeed JSON config ({exc})") from None
        for section in ("optimizer", "scheduler"):
            values = (config.get(section) or {}).get("params", {})
            if any(v != "auto" for v in values.values()):
                raise ConfigError(f"{where}: '{section}' sets its own values; selm steps its own AdamW and schedule "
                                  f"from train.*: remove the section or set its params to \"auto\"")
            config.pop(section, None)
        for key in _FROM_ARGS:
            if config.get(key, "auto") not in ("auto", wanted[key]):
                raise ConfigError(f"{where}: {key} is {config[key]}, train.* says {wanted[key]}; set it to \"auto\"")
        if config.get("train_batch_size", "auto") != "auto":
            raise ConfigError(f"{where}: train_batch_size follows from train.per_device_train_batch_size × "
                              f"gradient_accumulation_steps × processes; set it to \"auto\"")
        config.pop("train_batch_size", None)
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in STAGES:
        raise ConfigError(f"{where}: ZeRO stage {stage}; selm drives stages 2 and 3")
    # The weights keep train.dtype; DeepSpeed's own mixed precision must agree with it.
    for key, half in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if config.get(key, {}).get("enabled", "auto") not in ("auto", dtype == half):
            raise ConfigError(f"{where}: {key}.enabled contradicts train.dtype ({dtype})")
        config[key] = {**config.get(key, {}), "enabled": dtype == half}
    if dtype == torch.bfloat16:
        # Else ZeRO-2 in bf16 would apply a step whose gradient is not finite (see ZeroEngine.discard).
        config["bf16"].setdefault("check_grad_overflow", True)
    return {**config, **wanted, "managed_gradient_accumulation": False, "steps_per_print": 2**62,
            "wall_clock_breakdown": False}


class ZeroEngine:
    """One DeepSpeed engine around selm's engine module: its step, consolidated weights, checkpoints.

    Args:
        setting: ZeRO stage (2 or 3) or a DeepSpeed JSON config path (:func:`requested_deepspeed`).
        args: the run's TrainingArguments.
    """

    def __init__(self, setting: int | str, args: Any):
        self.setting = setting
        self.args = args
        self.engine: Any = None

    @property
    def stage(self) -> int:
        return self.engine.zero_optimization_stage()

    def initialize(self, model: SequenceStatsModel, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """``deepspeed.initialize`` on ``model`` (selm's engine module) with selm's AdamW; returns the
        DeepSpeed engine and its ZeRO optimizer. Under ZeRO-3 the parameters are partitioned here;
        the engine then scores through the output layer's own forward, chunk by chunk (ZeRO-3
        gathers a weight only inside its module's forward), not with the fused log-prob kernel.
        """
        import deepspeed
        from deepspeed.accelerator import get_accelerator

        if get_accelerator().device_name() == "cpu":
            # On CPU DeepSpeed would JIT-compile (g++, OpenMP) its shared-memory all-reduce at the
            # first initialize, tens of seconds, for inference_all_reduce only: training's
            # collectives are torch.distributed's (gloo) either way.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        dtype = next(model.parameters()).dtype
        config = deepspeed_config(self.setting, self.args, dtype)
        if config["zero_optimization"]["stage"] == 3 and hasattr(model.policy, "peft_config"):
            # Measured with DeepSpeed 0.19.8 and PEFT 0.21: the backward's recompute then sees
            # other tensor metadata than the forward (torch.utils.checkpoint's CheckpointError).
            raise ConfigError(f"lora: LoRA under DeepSpeed ZeRO-3 (train.deepspeed: {self.setting}) is not "
                              f"supported; use train.deepspeed: 2 or train.fsdp: true")
        self.engine, zero_optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config,
                                                                  dist_init_required=False)
        return self.engine, zero_optimizer

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of a micro-batch's loss, already scaled to its share of the step: DeepSpeed
        reduces (ZeRO-2) or reduce-scatters (ZeRO-3) the gradient into each process's partition."""
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> float:
        """Clip (``gradient_clipping``) and apply the accumulated gradient; returns its global L2
        norm before clipping. A non-finite gradient norm makes DeepSpeed skip the update and drop
        the gradients instead: :meth:`discard` relies on that."""
        self.engine.step()
        return float(self.engine.get_global_grad_norm())

    def discard(self) -> None:
        """Drop a step whose loss was non-finite on some process: its reduced gradient is then
        non-finite everywhere, which DeepSpeed's step detects, skipping the update and clearing
        the gradient partitions."""
        self.engine.step()

    def consolidated_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The policy's full weights on the main process's CPU (``{}`` elsewhere), for
        ``save_pretrained(state_dict=...)``; None under ZeRO-2, whose module holds the full weights.

        ZeRO-3 gathers one parameter at a time, so no process holds more than one extra full
        tensor besides the main process's CPU copy; a tied output layer is kept once, under its
        first name. A collective: every process must call it.
        """
        import deepspeed

        if self.stage != 3:
            return None
        policy = self.engine.module.policy
        main = torch.distributed.get_rank() == 0
        state: dict[str, torch.Tensor] = {}
        for name, param in policy.named_parameters():
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                if main:
                    state[name] = param.detach().to("cpu", copy=True)
        if main:
            kept = policy.state_dict().keys()
            state.update({name: b.detach().to("cpu", copy=True) for name, b in policy.named_buffers() if name in kept})
        return state

    def release(self) -> None:
        """Take DeepSpeed off the policy: its gradient hooks (and ZeRO-3's gather hooks) hold the
        engine and the ZeRO optimizer, fp32 partitions and AdamW moments included, alive for as
        long as the policy lives, and would fire again in the next engine's backward (the round
        loop trains the same module round after round). Under ZeRO-2 the module keeps its full,
        trained weights; under ZeRO-3 only partitions: take :meth:`consolidated_state_dict` first."""
        from deepspeed.runtime.zero import parameter_offload

        engine, self.engine = self.engine, None
        engine.destroy()
        # What destroy (0.19.8) leaves: the engine's own hooks on selm's engine module, and ZeRO-3's
        # module-level stack of modules in forward, where set-up puts the engine module for good,
        # so that every ZeRO-3 engine (its partitions and AdamW state) would stay alive.
        engine.module_forward_pre_hook.remove()
        engine.module_forward_post_hook.remove()
        stack = parameter_offload.FWD_MODULE_STACK
        stack[:] = [module for module in stack if module is not engine.module]

    def save(self, folder: Path) -> None:
        """Every process writes its partition of the optimizer state (and under ZeRO-3 of the
        weights) into ``folder``, DeepSpeed's checkpoint layout (a collective)."""
        self.engine.save_checkpoint(str(folder), tag=_TAG, save_latest=False)

    def load(self, folder: Path) -> None:
        """Every process reads its partition back from what :meth:`save` wrote (a collective)."""
        self.engine.load_checkpoint(str(folder), tag=_TAG, load_optimizer_states=True,
                                    load_lr_scheduler_states=False)
