"""Frozen editions of the clinical faithfulness benchmark, read from files shipped with the package (issue #30).

``heldout-v2`` is the held-out edition: 310 findings texts by six new writers (G-L), written before and without
looking at any rule that reads them, and laid out once by ``bench/make_heldout_v2.py`` (seeded). Its kinds:
``critical`` (one acute finding), ``multi`` (two or three), ``hedged``, ``resolved``, ``comparison``,
``device``, ``normal`` and ``negation``. Each case says what a correct impression must say::

    {"id", "edition", "kind", "writer", "findings", "origin", "note"?,
     "expect": [{"finding", "status": "present" | "uncertain" | "absent", "side": "left" | "right" |
                 "bilateral" | None}, ...]}

``present``: named; ``uncertain``: named with its hedge kept; ``absent``: not asserted present (negated,
resolved, or stated normal). A finding not listed is not in the text: asserting it invents it. The conventions
(what counts as a malposition, "probable" is a hedge, ...) are in ``bench/make_heldout_v2.py``'s docstring.

An edition is frozen: :func:`load_edition` refuses a file whose sha256 is not the pinned one. A change of any
case is a new edition under a new name, and the figures measured on the old one are kept. The generated
editions ``dev`` and ``heldout`` (:mod:`radllama.evaluate.faithfulness_cases`) are not here; the old
``heldout`` is now part of dev.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from importlib import resources

# name -> (file under radllama/evaluate/benchmarks, its sha256). A change is a new edition; the old figures are kept.
FROZEN: dict[str, tuple[str, str]] = {
    "heldout-v2": ("heldout-v2.jsonl", "dd062d176db3145402cfe77672c0026119e550958a6c851f8be321c259da3173"),
}
KINDS = ("critical", "multi", "hedged", "resolved", "comparison", "device", "normal", "negation")
STATUSES = ("present", "uncertain", "absent")
FINDING_TYPES = (
    "pneumothorax", "pleural effusion", "consolidation", "pulmonary edema", "cardiomegaly", "lung mass",
    "fracture", "free air", "collapse", "malpositioned tube", "widened mediastinum", "hiatal hernia", "nodule",
)  # fmt: skip


class EditionChanged(ValueError):
    """A frozen edition's file is not the one its digest pins."""


def edition_bytes(name: str) -> bytes:
    """The edition's file, as shipped."""
    if name not in FROZEN:
        raise KeyError(f"unknown frozen edition {name!r} (known: {', '.join(FROZEN)})")
    return resources.files("radllama.evaluate").joinpath("benchmarks", FROZEN[name][0]).read_bytes()


def edition_digest(name: str) -> str:
    """sha256 of the edition's file."""
    return hashlib.sha256(edition_bytes(name)).hexdigest()


def load_edition(name: str) -> list[dict]:
    """The cases of a frozen edition, in file order; :class:`EditionChanged` if its file is not the pinned one."""
    data = edition_bytes(name)
    digest = hashlib.sha256(data).hexdigest()
    if digest != FROZEN[name][1]:
        raise EditionChanged(
            f"edition {name!r} has sha256 {digest}, pinned {FROZEN[name][1]}: a changed edition is a new edition "
            "under a new name (the old figures are kept)"
        )
    return [json.loads(line) for line in data.decode("ascii").splitlines() if line.strip()]


def describe(cases: list[dict]) -> dict[str, Counter]:
    """Counts by kind, writer, finding (with its status), side of named findings, and findings per case."""
    out: dict[str, Counter] = {k: Counter() for k in ("kind", "writer", "finding", "side", "named per case")}
    for case in cases:
        out["kind"][case["kind"]] += 1
        out["writer"][case["writer"]] += 1
        named = [e for e in case["expect"] if e["status"] != "absent"]
        out["named per case"][len(named)] += 1
        for e in case["expect"]:
            out["finding"][f"{e['finding']} {e['status']}"] += 1
            if e["status"] != "absent":
                out["side"][e["side"] or "none"] += 1
    return out


def format_description(cases: list[dict]) -> str:
    """:func:`describe` as markdown tables."""
    d = describe(cases)
    lines = [f"{len(cases)} cases", ""]
    lines += ["| kind | cases |", "|---|---|", *(f"| {k} | {d['kind'][k]} |" for k in KINDS if d["kind"][k])]
    lines += ["", "| writer | cases |", "|---|---|", *(f"| {w} | {n} |" for w, n in sorted(d["writer"].items()))]
    lines += ["", "| finding | present | uncertain | absent |", "|---|---|---|---|"]
    for f in FINDING_TYPES:
        lines.append(f"| {f} | " + " | ".join(str(d["finding"][f"{f} {s}"]) for s in STATUSES) + " |")
    lines += ["", "| side of named findings | count |", "|---|---|", *(f"| {s} | {n} |" for s, n in d["side"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m radllama.evaluate.editions [NAME]``: describe a frozen edition."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "heldout-v2"
    print(f"{name} sha256 {edition_digest(name)}")
    print(format_description(load_edition(name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
