"""docs/extending.md: every example runs as written, each registering its extension for its own run only."""

import contextlib
import re
from pathlib import Path

import pytest

from selm.judges import JUDGE_KINDS
from selm.objectives.base import OBJECTIVES
from selm.sampling import SAMPLERS
from selm.tasks import TASKS

DOC = Path(__file__).parents[2] / "docs" / "extending.md"
EXAMPLES = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)
REGISTRIES = {"objective": OBJECTIVES, "judge": JUDGE_KINDS, "sampler": SAMPLERS, "task": TASKS}


def test_one_example_per_extension_point():
    assert len(EXAMPLES) == 4


@pytest.mark.parametrize("index, registry, name", [(0, "objective", "margin_dpo"), (1, "judge", "keyword"),
                                                   (2, "sampler", "naive"), (3, "task", "reverse")],
                         ids=["objective", "judge", "sampler", "task"])
def test_example_runs_and_registers_its_extension(index, registry, name):
    before = {key: reg.available() for key, reg in REGISTRIES.items()}
    with contextlib.ExitStack() as scope:
        for reg in REGISTRIES.values():
            scope.enter_context(reg.temporary_registrations())
        exec(compile(EXAMPLES[index], f"{DOC}:example {index + 1}", "exec"), {"__name__": f"extending_example_{index}"})
        assert REGISTRIES[registry].available() == sorted([*before[registry], name])
    assert {key: reg.available() for key, reg in REGISTRIES.items()} == before
