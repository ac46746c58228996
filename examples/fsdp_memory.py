"""Per-process memory of a full fine-tuning step, sharded with FSDP2 or DeepSpeed ZeRO-2 / ZeRO-3,
at 1 and 2 processes (CPU, gloo).

    python examples/fsdp_memory.py                       # hidden 1024, 8 layers, vocab 32000, AdamW
    python examples/fsdp_memory.py --deepspeed 3 --processes 2   # the same under train.deepspeed: 3
    python examples/fsdp_memory.py --hidden 256 --layers 2 --vocab 4000 --steps 2   # a quick look

Each setting runs in fresh processes under torchrun: build the Llama from a config (random init,
float32, tied output layer), shard it with selm's `train.fsdp` path, or `train.deepspeed` with
``--deepspeed`` (`PreferenceTrainer`; one process has nothing to shard and trains unsharded), take
``--steps`` SimPO steps on synthetic pairs, then report per process:

- ``state_gb``: the bytes this process holds of the parameters, their gradients (before
  ``zero_grad``, measured inside the last step) and AdamW's two moments: what sharding divides.
  Under DeepSpeed: every distinct tensor storage of the module's weights (ZeRO-3: this process's
  partition of them), and of the ZeRO optimizer (its fp32 master partition, gradient partitions
  and reduction buckets) and AdamW's moments, measured inside the last step's AdamW update;
- ``peak_rss_gb``: the process's peak resident memory (``ru_maxrss``), which also holds the
  whole model as built before sharding, the activations of a step, the layer being unsharded,
  Python, torch and the libraries.

Prints a Markdown table (one row per process count) for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def local_bytes(tensor) -> int:
    """Bytes of this process's part of ``tensor`` (the local shard of a DTensor)."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def worker(args: argparse.Namespace) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from selm.data import TokenizedPair
    from selm.distributed import make_accelerator
    from selm.objectives import build_objective
    from selm.train.config import TrainingArguments
    from selm.train.trainer import PreferenceTrainer

    torch.manual_seed(0)
    accelerator = make_accelerator()
    config = LlamaConfig(hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64,
                         vocab_size=args.vocab, tie_word_embeddings=True, max_position_embeddings=256)
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(3, args.vocab, (n,), generator=g).tolist()

    pairs = [TokenizedPair(index=i, prompt_ids=ids(32), chosen_ids=ids(32), rejected_ids=ids(32)) for i in range(64)]
    sharding = {"deepspeed": args.deepspeed} if args.deepspeed else {"fsdp": True}
    train = TrainingArguments(learning_rate=1e-5, per_device_train_batch_size=8 // accelerator.num_processes,
                              max_steps=args.steps, warmup_ratio=0.0, dtype="float32", chunk_size=256, **sharding)
    trainer = PreferenceTrainer(model, build_objective("simpo"), train, pairs, pad_token_id=0,
                                accelerator=accelerator, progress=False)
    measured = {}
    if trainer.zero is not None:
        measure_deepspeed(trainer, measured)
    else:
        measure_fsdp(trainer, measured)
    trainer.train()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    row = {"rank": accelerator.process_index, **{k: v / 2**30 for k, v in measured.items()}, "peak_rss_gb": rss_gb}
    row["state_gb"] = row["params"] + row.get("master", 0) + row["grads"] + row["adam"]
    with open(Path(args.out) / f"rank{accelerator.process_index}.json", "w") as f:
        json.dump(row, f)


def measure_fsdp(trainer, measured: dict[str, int]) -> None:
    """Count the local shards of the parameters, gradients and moments inside the optimizer step."""
    import torch

    step = trainer.optimizer.step

    def step_and_measure(*a, **k):
        # Inside the step, the gradients and (after it) both moments are alive at once.
        out = step(*a, **k)
        params = [p for p in trainer.model.parameters()]
        measured["params"] = sum(local_bytes(p) for p in params)
        measured["grads"] = sum(local_bytes(p.grad) for p in params if p.grad is not None)
        measured["adam"] = sum(local_bytes(v) for s in trainer.optimizer.state.values() for v in s.values()
                               if torch.is_tensor(v) and v.ndim > 0)
        return out

    trainer.optimizer.step = step_and_measure


def tensors_in(value, depth: int = 3):
    """The tensors in ``value``, a tensor or (up to ``depth`` levels of) lists, tuples and dicts of them."""
    import torch

    if torch.is_tensor(value):
        yield value
    elif depth > 0 and isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from tensors_in(item, depth - 1)


def measure_deepspeed(trainer, measured: dict[str, int]) -> None:
    """Count distinct tensor storages inside the AdamW update that DeepSpeed's step runs: the
    module's weights (``params``; ZeRO-3: this process's partition, and the small parameters it
    keeps whole), the fp32 master partition AdamW steps (``master``), AdamW's moments (``adam``),
    and every other tensor the ZeRO optimizer holds (``grads``: the master's gradient, gradient
    partitions, reduction buckets)."""
    zero_optimizer = trainer.optimizer
    adamw = zero_optimizer.optimizer
    step = adamw.step

    def step_and_measure(*a, **k):
        out = step(*a, **k)
        seen: set[int] = set()

        def distinct_bytes(tensors) -> int:
            total = 0
            for t in tensors:
                storage = t.untyped_storage()
                if t.device.type != "meta" and storage.nbytes() and storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
            return total

        params = list(trainer.model.module.parameters())
        masters = [p for group in adamw.param_groups for p in group["params"]]
        measured["params"] = distinct_bytes([*params, *(p.ds_tensor for p in params if hasattr(p, "ds_tensor"))])
        measured["master"] = distinct_bytes(masters)
        measured["adam"] = distinct_bytes(v for s in adamw.state.values() for v in s.values() if v.ndim > 0)
        measured["grads"] = distinct_bytes([*(p.grad for p in masters + params if p.grad is not None),
                                            *(t for v in vars(zero_optimizer).values() for t in tensors_in(v))])
        return out

    adamw.step = step_and_measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--deepspeed", type=int, choices=[2, 3], help="shard with DeepSpeed ZeRO-2 / ZeRO-3 "
                                                                      "(train.deepspeed) instead of FSDP2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    n_params = args.layers * 16 * args.hidden**2 + args.vocab * args.hidden  # attention 4H², SwiGLU 3·H·4H
    print(f"Llama, hidden {args.hidden}, {args.layers} layers, vocab {args.vocab} (tied): ~{n_params / 1e6:.0f}M "
          f"parameters, float32, AdamW; {args.steps} steps of 8 pairs × 96 tokens\n")
    sharding = f"ZeRO-{args.deepspeed}" if args.deepspeed else "FSDP2"
    print("| processes | state per process (params + grads + AdamW) | of which params | peak RSS per process |")
    print("|---|---|---|---|")
    breakdown = []
    for n in args.processes:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                       __file__, "--worker", "--out", out, "--hidden", str(args.hidden), "--layers",
                       str(args.layers), "--vocab", str(args.vocab), "--steps", str(args.steps),
                       *(["--deepspeed", str(args.deepspeed)] if args.deepspeed else [])]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            rows = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
        state = " / ".join(f"{r['state_gb']:.3f}" for r in rows)
        params = " / ".join(f"{r['params']:.3f}" for r in rows)
        rss = " / ".join(f"{r['peak_rss_gb']:.2f}" for r in rows)
        print(f"| {n}{', ' + sharding if n > 1 else ' (unsharded)'} | {state} GiB | {params} GiB | {rss} GiB |")
        parts = ("params", "master", "grads", "adam")
        breakdown += [f"{n} processes, rank {r['rank']}: " + ", ".join(f"{k} {r[k]:.3f}" for k in parts if k in r)
                      for r in rows]
    print("\nstate per process (GiB; DeepSpeed: master = fp32 partition AdamW steps, grads = every other "
          "tensor of the ZeRO optimizer, reduction buckets included):")
    print("\n".join(breakdown))


if __name__ == "__main__":
    main()
