"""docs/extending.md: every example runs as written, each registering its extension for its own run only."""

import contextlib
import re
from pathlib import Path

import pytest

from selm.judges import JUDGE_KINDS
from selm.objectives.base import OBJECTIVES
from selm.objectives.fields import PREFERENCE_FIELDS
from selm.sampling import SAMPLERS
from selm.tasks import TASKS

DOC = Path(__file__).parents[2] / "docs" / "extending.md"
EXAMPLES = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)
REGISTRIES = {"objective": OBJECTIVES, "judge": JUDGE_KINDS, "sampler": SAMPLERS, "task": TASKS}


def test_one_example_per_extension_point_and_one_for_a_new_field():
    assert len(EXAMPLES) == 5


@pytest.mark.parametrize("index, registry, name", [(0, "objective", "margin_dpo"), (1, "objective", "weighted_dpo"),
                                                   (2, "judge", "keyword"), (3, "sampler", "naive"),
                                                   (4, "task", "reverse")],
                         ids=["objective", "objective-new-field", "judge", "sampler", "task"])
def test_example_runs_and_registers_its_extension(index, registry, name):
    before = {key: reg.available() for key, reg in REGISTRIES.items()}
    fields_before = PREFERENCE_FIELDS.specs
    with contextlib.ExitStack() as scope:
        scope.enter_context(PREFERENCE_FIELDS.temporary_registrations())
        for reg in REGISTRIES.values():
            scope.enter_context(reg.temporary_registrations())
        exec(compile(EXAMPLES[index], f"{DOC}:example {index + 1}", "exec"), {"__name__": f"extending_example_{index}"})
        assert REGISTRIES[registry].available() == sorted([*before[registry], name])
    assert {key: reg.available() for key, reg in REGISTRIES.items()} == before
    assert PREFERENCE_FIELDS.specs == fields_before
