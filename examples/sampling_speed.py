"""Sampling speed of the ``hf`` backend: source trees side by side (before / after a change), and
float32 against bfloat16 weights, on the bench's model shapes (random init).

    git worktree add /tmp/selm-before e59f4b0       # the tree to compare with
    python examples/sampling_speed.py --src /tmp/selm-before/src src --shape gemma3-270m
    python examples/sampling_speed.py --dtype float32 bfloat16 --shape gemma3-270m

Each measurement runs in a fresh process (``PYTHONPATH`` = the source tree) so peak memory is its
own: the model is built, one short warm-up call runs, then one timed ``generate`` of each workload:
``greedy`` (n = 1, temperature 0) and ``sampled`` (n samples a prompt at temperature 1, what the
round loop does). The model never emits EOS on purpose (its EOS is unset), so every completion is
``--max-new-tokens`` long and every tree does the same work; the table says whether the trees'
greedy tokens agree. Rows of one table run interleaved (tree by tree, per repeat), so a change in
the machine's load hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, torch
from selm.bench.workloads import SHAPES, build_model, word_tokenizer
from selm.bench.sampler import _prompts
from selm.sampling.base import SamplingParams
from selm.sampling.hf import HFSampler
spec = json.loads(sys.argv[1])
shape = SHAPES[spec["shape"]]
model = build_model(shape).to(getattr(torch, spec["dtype"])).eval()
model.generation_config.eos_token_id = None
sampler = HFSampler(model, word_tokenizer(shape.vocab_size), batch_size=spec["batch_size"], progress=False)
prompts = _prompts(spec["prompts"], shape.vocab_size)
sampler.generate(prompts[:2], SamplingParams(n=1, temperature=0.0, max_new_tokens=2))
greedy = spec["workload"] == "greedy"
params = SamplingParams(n=1 if greedy else spec["n"], temperature=0.0 if greedy else 1.0,
                        max_new_tokens=spec["max_new_tokens"], seed=0)
start = time.perf_counter()
out = sampler.generate(prompts, params)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "tokens": sum(c.num_tokens for group in out for c in group),
                  "first": out[0][0].token_ids, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def measure(src: str, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{src} ({spec['dtype']}, {spec['workload']}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", nargs="+", default=["src"], help="source trees to compare (each a selm src/ folder)")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--shape", default="gemma3-270m", choices=["gemma3-270m", "small", "tiny"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4, help="samples per prompt of the sampled workload")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workloads", nargs="+", default=["greedy", "sampled"], choices=["greedy", "sampled"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rows = [(src, dtype) for src in args.src for dtype in args.dtype]
    print(f"shape {args.shape}, {args.prompts} prompts x {args.max_new_tokens} new tokens; sampled: n {args.n}, "
          f"temperature 1; hf batch_size {args.batch_size}; {os.cpu_count()} CPUs")
    print("| source | dtype | workload | seconds (each repeat) | tokens/s (best) | peak RSS GiB | greedy tokens as the first row |")
    print("|---|---|---|---|---|---|---|")
    for workload in args.workloads:
        results: dict[tuple[str, str], list[dict]] = {row: [] for row in rows}
        for _ in range(args.repeats):
            for src, dtype in rows:
                spec = {"shape": args.shape, "dtype": dtype, "workload": workload, "prompts": args.prompts,
                        "n": args.n, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
                results[src, dtype].append(measure(src, spec))
        first = results[rows[0]][0]["first"]
        for (src, dtype), runs in results.items():
            best = min(runs, key=lambda r: r["seconds"])
            same = "-" if workload != "greedy" else ("yes" if runs[0]["first"] == first else "no")
            seconds = ", ".join(f"{r['seconds']:.2f}" for r in runs)
            print(f"| {src} | {dtype} | {workload} | {seconds} | "
                  f"{best['tokens'] / best['seconds']:.1f} | {max(r['peak_rss_gib'] for r in runs):.2f} | {same} |",
                  flush=True)


if __name__ == "__main__":
    main()
