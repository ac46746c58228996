"""Each measurement in a fresh Python process, so its peak memory and its warm-up are its own.

The parent writes the spec as JSON on the command line; the child
(``python -m selm.bench.worker KIND SPEC_JSON OUT_FILE``) runs it and writes the result as JSON.
A child that fails or runs out of time becomes a row with ``status: "failed"`` and the last line
of its error, never a crash of the whole benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any


def _measure(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    if kind == "train":
        from selm.bench.systems import SystemSpec, run_system

        return run_system(SystemSpec(**spec)).to_dict()
    if kind == "online":
        from selm.bench.online_systems import OnlineSpec, run_online_system

        return run_online_system(OnlineSpec(**spec))
    if kind == "sampler":
        from selm.bench.sampler import SamplerSpec, run_sampler_bench

        return run_sampler_bench(SamplerSpec(**spec))
    raise ValueError(f"unknown measurement kind {kind!r}")


def run_isolated(kind: str, spec: Any, timeout: float = 1800.0) -> dict[str, Any]:
    """Run one measurement (``kind`` ``"train"``, ``"sampler"`` or ``"online"``) of the dataclass ``spec`` in a child.

    Returns:
        The child's result dict plus ``status: "ok"``, or ``{"status": "failed", "error": ...}``.
    """
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="selm-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "selm.bench.worker", kind, json.dumps(asdict(spec)), str(out)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.is_file():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return {"status": "failed", "error": lines[-1] if lines else f"exit code {proc.returncode}"}
        return {"status": "ok", **json.loads(out.read_text())}


def main(argv: list[str]) -> int:
    kind, spec, out = argv
    result = _measure(kind, json.loads(spec))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
