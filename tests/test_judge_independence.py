"""Issue #30: the independent reader stays independent, and out of everything that chooses an answer.

An AST scan of radllama's imports (no module is imported, so neither torch nor spaCy is needed), following
imports transitively inside radllama, lazy ones in functions included: a module imported anywhere in a module
counts as reached by it.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
READER = {"radllama.evaluate.judge", "radllama.evaluate.judge_rules"}
DECIDERS = ("radllama.generate", "radllama.serve", "radllama.train")


@cache
def modules() -> dict[str, Path]:
    """Every radllama module name -> its file."""
    out = {}
    for path in (SRC / "radllama").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules())


@cache
def direct_imports(name: str) -> frozenset[str]:
    """radllama modules that ``name`` imports anywhere in its file (top level or inside functions)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= _with_parents(target)
            for alias in node.names:  # "from radllama.evaluate import judge" imports a module
                found |= _with_parents(f"{target}.{alias.name}")
    return frozenset(found - {name})


def reached(roots: list[str]) -> set[str]:
    """Every radllama module that importing ``roots`` can run."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in modules():
            continue
        seen.add(name)
        todo.extend(direct_imports(name))
    return seen


def test_scan_sees_real_imports():
    # The scanner itself: a known chain is found, so an empty answer below means something.
    assert "radllama.consistency" in reached(["radllama.generate.mbr"])
    assert "radllama.labeller" in reached(["radllama.consistency"])
    assert "radllama.evaluate.judge_rules" in reached(["radllama.evaluate.judge"])


def test_no_decoder_server_or_trainer_reaches_the_reader():
    roots = [m for m in modules() if any(m == d or m.startswith(d + ".") for d in DECIDERS)]
    assert len(roots) > 10
    for root in roots:
        hit = reached([root]) & READER
        assert not hit, f"{root} reaches the independent reader ({sorted(hit)}): no decoder may use it"


def test_the_reader_reaches_neither_labeller_nor_consistency():
    closure = reached(sorted(READER))
    assert not closure & {"radllama.labeller", "radllama.consistency"}, sorted(closure)
