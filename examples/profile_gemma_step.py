"""The two profiles behind docs/performance.md's explanations of the unmet Gemma-shape targets.

    python examples/profile_gemma_step.py memory    # RSS of a LoRA training step, with and without the heap's cache
    python examples/profile_gemma_step.py decoder   # decoder forward + backward: padded vs packed rows
    python examples/profile_gemma_step.py breakdown # a full step's parts (decoder, head, AdamW) per layout

``memory`` runs the bench's ``selm+lora+padding-free`` system (Gemma-3-270M shape, random init,
1 warm-up + 1 step) and prints the process RSS when each training step starts and ends, and again
after ``malloc_trim(0)`` hands the C heap's free pages back: what a step leaves in RSS but not in
live tensors is its transient working set.

``decoder`` times ``response_hidden_states`` forward + backward on the bench's batch (4 sequences
of 83–335 tokens), padded to the longest and packed into rows, twice each; the output layer is not
included.
"""

from __future__ import annotations

import argparse
import ctypes
import time

from selm.bench.workloads import GEMMA3_270M, PAD_ID, build_model, make_pairs


def rss_gib() -> float:
    """Resident set size of this process (GiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**30


def profile_memory() -> None:
    import selm.train.trainer as trainer_module
    from selm.bench.systems import SystemSpec, run_system

    accumulate = trainer_module.PreferenceTrainer.accumulate

    def traced(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = rss_gib()
        result = accumulate(self, *args, **kwargs)
        end = rss_gib()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        print(f"step: RSS {start:.2f} GiB before, {end:.2f} GiB after, {rss_gib():.2f} GiB after malloc_trim",
              flush=True)
        return result

    trainer_module.PreferenceTrainer.accumulate = traced
    result = run_system(SystemSpec("selm", "gemma3-270m", lora=True, padding_free=True, warmup=1, steps=1))
    print(f"peak RSS {result.peak_rss_bytes / 2**30:.2f} GiB")


def profile_decoder() -> None:
    from selm.data import collate_preference_batch
    from selm.engine import pack_sequences, response_hidden_states

    model = build_model(GEMMA3_270M)
    pairs = make_pairs(2, GEMMA3_270M.vocab_size)
    sequences = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    batches = {"padded": collate_preference_batch(pairs, PAD_ID), "packed rows": pack_sequences(sequences, PAD_ID)}
    for name, batch in [*batches.items()] * 2:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        hidden, _ = response_hidden_states(model, batch)
        hidden.sum().backward()
        print(f"{name:12s} {tuple(batch.input_ids.shape)}: {time.perf_counter() - start:.2f} s", flush=True)


def profile_breakdown(repeats: int, dtype: str) -> None:
    """Each part of a full fine-tuning step on the bench's batch, timed on its own, per layout:
    the decoder's forward + backward (all positions of the layout, filler included), the output
    layer's forward + backward on the response positions (the same in every layout), and the fused
    AdamW update of all 268M weights. The process's heap keeps freed memory (``selm.heap``), as in
    training. Wall seconds, the best of ``repeats`` after one warm-up pass. ``dtype`` bfloat16 casts
    the weights (and so the gradients and AdamW's moments) to bf16: the kernels' speed in bf16 on
    this CPU, not a training recipe (bf16 weights lose updates smaller than their rounding)."""
    import torch

    from selm.data import collate_preference_batch
    from selm.engine import linear_token_logprobs, pack_sequences, response_hidden_states
    from selm.heap import keep_freed_memory
    from selm.optim import adamw

    keep_freed_memory()
    model = build_model(GEMMA3_270M).to(getattr(torch, dtype))
    head = model.get_output_embeddings().weight
    optimizer = adamw(model.parameters(), lr=1e-6)
    pairs = make_pairs(2, GEMMA3_270M.vocab_size)
    sequences = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    batches = {"padded": collate_preference_batch(pairs, PAD_ID),
               "packed rows": pack_sequences(sequences, PAD_ID, layout="rows"),
               "one packed row": pack_sequences(sequences, PAD_ID, layout="one_row")}

    def timed(part) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        part()
        return time.perf_counter() - start

    def decoder(batch):  # type: ignore[no-untyped-def]
        hidden, targets = response_hidden_states(model, batch)
        hidden.sum().backward()
        return hidden.detach(), targets

    print(f"{dtype} weights")
    print(f"{'layout':15s} {'slots':>6s} {'decoder s':>10s} {'head s':>7s} {'AdamW s':>8s}")
    for name, batch in batches.items():
        best: dict[str, float] = {}
        for attempt in range(repeats + 1):
            model.zero_grad(set_to_none=True)
            out: list = []
            times = {"decoder": timed(lambda: out.extend(decoder(batch)))}
            hidden = out[0].requires_grad_()
            times["head"] = timed(lambda: linear_token_logprobs(hidden, head, out[1]).sum().backward())
            times["adamw"] = timed(optimizer.step)
            if attempt:  # the first pass warms up
                best = times if not best else {k: min(v, times[k]) for k, v in best.items()}
        print(f"{name:15s} {batch.input_ids.numel():6d} {best['decoder']:10.2f} {best['head']:7.2f} "
              f"{best['adamw']:8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["memory", "decoder", "breakdown"])
    parser.add_argument("--repeats", type=int, default=2, help="breakdown: timed passes per layout")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="breakdown: weights")
    args = parser.parse_args()
    if args.what == "memory":
        profile_memory()
    elif args.what == "decoder":
        profile_decoder()
    else:
        profile_breakdown(args.repeats, args.dtype)


if __name__ == "__main__":
    main()
