"""examples/ifeval_breakdown.py: per-constraint satisfaction read back from run directories."""

import json
import subprocess
import sys
from pathlib import Path

from selm.tasks.constraints import Constraint
from selm.tasks.ifeval import format_prompt

REPO = Path(__file__).resolve().parents[2]
# Two held-out prompts: lowercase + at most 5 words, and an ending.
PROMPTS = [format_prompt("tea", [Constraint("lowercase"), Constraint("max_words", "5")]),
           format_prompt("dogs", [Constraint("ending", "The end")])]


def write_round(run: Path, k: int, responses: list[str]) -> None:
    folder = run / "rounds" / f"{k:02d}"
    folder.mkdir(parents=True)
    rows = [{"prompt": p, "response": r} for p, r in zip(PROMPTS, responses)]
    (folder / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_table_compares_the_start_with_each_last_round(tmp_path):
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    write_round(a, 0, [" Tea is a drink that many people enjoy.", " Dogs are loyal."])
    write_round(a, 1, [" tea is nice.", " Dogs are loyal. The end"])
    write_round(b, 0, [" Tea is a drink that many people enjoy.", " Dogs are loyal."])
    out = subprocess.run([sys.executable, str(REPO / "examples" / "ifeval_breakdown.py"), str(a), str(b)],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines()[2:]}
    # Columns: prompts, π0, run-a round 1, run-b round 0 (its last round).
    assert rows["`lowercase`"] == ["1", "0.00", "1.00", "0.00"]
    assert rows["`max_words`"] == ["1", "0.00", "1.00", "0.00"]
    assert rows["`ending`"] == ["1", "0.00", "1.00", "0.00"]
    assert rows["responses starting lowercase"] == ["2", "0.00", "0.50", "0.00"]
