"""The layering of docs/architecture.md, checked on the code: no import runs upward, no two modules
import each other. Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "selm"

# Top to bottom; a module may import its own layer (without cycles) and every layer below it.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "__main__"),
    ("bench",),
    ("loop",),
    ("train", "reward_model"),
    ("sampling", "judges"),
    ("eval", "report"),
    ("data",),
    ("engine",),
    ("objectives",),
    ("tasks",),
    ("modeling",),
    ("io", "progress", "heap", "rundir", "artifacts", "cache", "distributed", "errors", "config", "registry", "optim", "__init__"),
]
RANK = {name: len(LAYERS) - i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``selm.*`` module named by an import statement anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("selm."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selm") and node.level == 0:
            found.add(node.module)
            # ``from selm.pkg import module`` names a module too.
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (SRC.parent / node.module.replace(".", "/") / f"{a.name}.py").is_file())
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_every_package_and_top_level_module_has_a_layer():
    names = {_layer(m) for m in _graph()}
    assert not names - set(RANK), f"add these to LAYERS (and docs/architecture.md): {sorted(names - set(RANK))}"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} imports {t}" for m, targets in graph.items() for t in sorted(targets)
            if _layer(m) != "__init__" and RANK.get(_layer(t), 0) > RANK.get(_layer(m), 0)]


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    # A package's __init__ re-exports its own modules: that pair is not a cycle.
    return sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                   if b in graph and a in graph[b] and a != b
                   and not (b == a.rsplit(".", 1)[0] or a == b.rsplit(".", 1)[0])})


def test_the_checks_see_an_upward_import_and_a_cycle():
    graph = {"selm.modeling.sources": {"selm.tasks.registry"}, "selm.tasks.registry": {"selm.modeling.sources"},
             "selm.loop.run": {"selm.train.trainer"}}
    assert _upward(graph) == ["selm.modeling.sources imports selm.tasks.registry"]
    assert _cycles(graph) == [("selm.modeling.sources", "selm.tasks.registry")]


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = _upward(_graph())
    assert not upward, "\n".join(upward)


def test_no_two_modules_import_each_other():
    cycles = _cycles(_graph())
    assert not cycles, cycles
