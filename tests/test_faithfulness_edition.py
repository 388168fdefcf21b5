"""The frozen held-out edition ``heldout-v2`` (issue #30): pinned, well formed, apart from the old editions.

The keyword checks here are a loose sanity check of the cases, written with the cases and apart from every
rule that grades impressions (the labeller, the consistency check, the judge): they ask only that a text
mentions what its ``expect`` says a correct impression must name.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from radllama.evaluate import editions
from radllama.evaluate.editions import (
    FINDING_TYPES,
    KINDS,
    STATUSES,
    EditionChanged,
    describe,
    edition_digest,
    format_description,
    load_edition,
)
from radllama.evaluate.faithfulness_cases import NEGATIONS, PHRASES, SIZES, WRITERS, split_sentences, templated_cases

# A change is a new edition; the old figures are kept. Never update this digest for heldout-v2: add heldout-v3.
HELDOUT_V2_SHA256 = "dd062d176db3145402cfe77672c0026119e550958a6c851f8be321c259da3173"
ROOT = Path(__file__).resolve().parents[1]

# What a text must mention for each finding it says a correct impression names (loose, on purpose).
MENTIONS: dict[str, str] = {
    "pneumothorax": r"pneumothora|\bptx\b",
    "pleural effusion": r"effusion|pleural fluid|haemothorax|hemothorax|hydropneumothorax",
    "consolidation": r"consolidat|pneumonia|\bpna\b|airspace|opaci",
    "pulmonary edema": r"edema|oedema",
    "cardiomegaly": r"cardiomegaly|cardiac (silhouette|enlargement)|heart\b.*enlarged",
    "lung mass": r"\bmass\b",
    "fracture": r"fractur|\bfx\b",
    "free air": r"free (intraperitoneal )?(air|gas)|pneumoperitoneum|rigler",
    "malpositioned tube": r"tube|\bett\b|\bngt\b|\bogt\b|catheter|picc|drain",
    "collapse": r"collaps|atelecta|re-?expand",
    "widened mediastinum": r"mediastin",
    "hiatal hernia": r"hiat\w* hernia",
    "nodule": r"nodul",
}
SIDE_WORDS = {
    "left": r"(?i:\bleft\b|lingula)|\bL\b|\bL[UL]L\b",
    "right": r"(?i:\bright\b)|\bR\b|\bR[UML]L\b",
    "bilateral": r"(?i:bilateral|\bboth\b)",
}
HEDGES = (
    r"cannot (be )?exclu|not exclu|possib|\bmay\b|\bcould\b|questionab|\?|probable|equivocal|suspicious for"
    r"|suspected|\bversus\b|\bvs\b"
)
RESOLVED = r"resolv|resolution|no longer|cleared|clearing|re-?expanded|withdrawn|replaced"
NEGATED = r"\bno\b|\bnot\b|negative for|without"


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return load_edition("heldout-v2")


def _says(text: str, finding: str) -> bool:
    return re.search(MENTIONS[finding], text, re.IGNORECASE) is not None


def _norm(sentence: str) -> str:
    """A sentence for comparison: lower case, no heading, no punctuation, single spaces."""
    sentence = re.sub(r"^[\w/ ]+:\s+", "", sentence.strip())
    sentence = sentence.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(sentence.split())


def _sentences(text: str) -> list[str]:
    # A structured report's headings each open a sentence ("Lungs: Clear. Pleura: ..."); split_sentences
    # (the old editions' splitter) cuts there too.
    return split_sentences(text)


def test_digest_is_pinned() -> None:
    assert edition_digest("heldout-v2") == HELDOUT_V2_SHA256
    assert editions.FROZEN["heldout-v2"][1] == HELDOUT_V2_SHA256


def test_a_changed_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = editions.edition_bytes("heldout-v2")
    monkeypatch.setattr(editions, "edition_bytes", lambda name: data.replace(b"left", b"right", 1))
    with pytest.raises(EditionChanged, match="new edition"):
        load_edition("heldout-v2")
    with pytest.raises(KeyError):
        editions.FROZEN["heldout-v9"]


def test_the_committed_script_made_the_file() -> None:
    """Provenance: the seeded script in bench/ rebuilds the frozen file byte for byte."""
    spec = importlib.util.spec_from_file_location("make_heldout_v2", ROOT / "bench" / "make_heldout_v2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(module.build()) == editions.edition_bytes("heldout-v2")
    assert module.FINDINGS == FINDING_TYPES and module.KINDS == KINDS


def test_the_reader_imports_no_rule() -> None:
    """The loader is plain data: it imports nothing of ours (no labeller, no consistency check, no judge)."""
    tree = ast.parse(Path(editions.__file__).read_text())
    imported = {
        name
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) else []
        )
    }  # fmt: skip
    assert not any(name.startswith("radllama") for name in imported), imported


def test_schema(cases: list[dict]) -> None:
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids))
    assert len({c["findings"] for c in cases}) == len(cases)
    for c in cases:
        assert c["edition"] == "heldout-v2" and c["kind"] in KINDS and c["origin"] == "written"
        assert c["id"].startswith(f"heldout-v2-{c['kind']}-")
        assert set(c) <= {"id", "edition", "kind", "writer", "findings", "expect", "origin", "note"}
        assert len(_sentences(c["findings"])) >= 2, c["id"]
        names = [e["finding"] for e in c["expect"]]
        assert len(names) == len(set(names)), c["id"]
        for e in c["expect"]:
            assert set(e) == {"finding", "status", "side"}
            assert e["finding"] in FINDING_TYPES and e["status"] in STATUSES, e
            assert e["side"] in ("left", "right", "bilateral", None), e


def test_each_kind_has_its_shape(cases: list[dict]) -> None:
    for c in cases:
        by = Counter(e["status"] for e in c["expect"])
        named = {e["finding"]: e for e in c["expect"] if e["status"] != "absent"}
        if c["kind"] == "critical":
            assert by["present"] == 1 and by["uncertain"] == 0, c["id"]
        elif c["kind"] == "multi":
            assert by["present"] in (2, 3) and by["uncertain"] == 0, c["id"]
        elif c["kind"] == "hedged":
            assert by["uncertain"] >= 1, c["id"]
        elif c["kind"] == "resolved":
            assert by["absent"] >= 1 and by["uncertain"] == 0, c["id"]
        elif c["kind"] == "comparison":
            assert by["present"] >= 1 and by["uncertain"] == 0, c["id"]
        elif c["kind"] == "device":
            assert "malpositioned tube" in {e["finding"] for e in c["expect"]}, c["id"]
        else:  # normal, negation: nothing to name
            assert not named, c["id"]
        if c["kind"] == "negation":
            assert by["absent"] >= 1 and re.search(NEGATED, c["findings"], re.IGNORECASE), c["id"]


def test_counts(cases: list[dict]) -> None:
    d = describe(cases)
    assert 250 <= len(cases) <= 320
    kinds = d["kind"]
    assert kinds["critical"] >= 100 and kinds["hedged"] >= 30 and kinds["resolved"] >= 25
    assert kinds["comparison"] >= 25 and kinds["device"] >= 25 and kinds["normal"] >= 30 and kinds["negation"] >= 30
    multi = Counter(sum(e["status"] == "present" for e in c["expect"]) for c in cases if c["kind"] == "multi")
    assert multi[2] >= 25 and multi[3] >= 15
    # Every finding type stated on its own by several writers: 8 phrasings each, 6 for the two added types.
    critical = Counter(e["finding"] for c in cases if c["kind"] == "critical" for e in c["expect"])
    for finding in FINDING_TYPES:
        assert critical[finding] >= (6 if finding in ("hiatal hernia", "nodule") else 8), finding
        writers = {c["writer"] for c in cases if c["kind"] == "critical" and c["expect"][0]["finding"] == finding}
        assert len(writers) == 6, finding
    devices = Counter(
        e["status"] for c in cases if c["kind"] == "device" for e in c["expect"] if e["finding"] == "malpositioned tube"
    )
    assert devices["present"] >= 10 and devices["absent"] >= 10
    # New writers, each writing every kind.
    assert set(d["writer"]) == set("GHIJKL") and not set(d["writer"]) & set(WRITERS)
    for kind in KINDS:
        assert {c["writer"] for c in cases if c["kind"] == kind} == set("GHIJKL"), kind


def test_sides_are_balanced(cases: list[dict]) -> None:
    sides = describe(cases)["side"]
    assert abs(sides["left"] - sides["right"]) <= 0.1 * (sides["left"] + sides["right"]), sides
    assert sides["bilateral"] >= 3


def test_named_findings_are_in_the_text(cases: list[dict]) -> None:
    """Each present or uncertain finding is mentioned, on its side; each uncertain one beside a hedge."""
    for c in cases:
        text = c["findings"]
        for e in c["expect"]:
            if e["status"] == "absent":
                continue
            assert _says(text, e["finding"]), (c["id"], e)
            if e["side"]:
                assert re.search(SIDE_WORDS[e["side"]], text), (c["id"], e)
            if e["status"] == "uncertain":
                hedged = [s for s in _sentences(text) if _says(s, e["finding"]) and re.search(HEDGES, s, re.I)]
                assert hedged, (c["id"], e)


def test_resolved_findings_are_said_to_be_gone(cases: list[dict]) -> None:
    for c in [c for c in cases if c["kind"] == "resolved"]:
        gone = [
            e
            for e in c["expect"]
            if e["status"] == "absent"
            and any(_says(s, e["finding"]) and re.search(RESOLVED, s, re.I) for s in _sentences(c["findings"]))
        ]
        assert gone, c["id"]


def test_no_hedge_or_resolution_in_critical_and_multi(cases: list[dict]) -> None:
    """A critical or multi text asserts its findings: no hedge and no resolution beside them."""
    for c in [c for c in cases if c["kind"] in ("critical", "multi")]:
        for e in c["expect"]:
            if e["status"] == "present":
                for s in _sentences(c["findings"]):
                    if _says(s, e["finding"]) and not re.search(NEGATED, s, re.I):
                        assert not re.search(r"\bmay\b|possib|cannot|\?|resolv|no longer", s, re.I), (c["id"], s)


def _old_sentences() -> set[str]:
    """The old editions' normal and negation sentences."""
    old = {s for w in WRITERS.values() for s, _ in w["normals"]}
    old |= {s for negs in NEGATIONS.values() for s in negs}
    return {_norm(s) for s in old}


def _old_phrases() -> set[str]:
    """Every old phrasing of a finding, filled with every side and size."""
    out = set()
    for phrases in PHRASES.values():
        for p in phrases:
            for side in ("left", "right"):
                for size in SIZES:
                    opp = {"left": "right", "right": "left"}[side]
                    out.add(_norm(p.format(side=side, opp=opp, size=size)))
    return out


def test_sentences_are_disjoint_from_the_old_editions(cases: list[dict]) -> None:
    """No normal or negation sentence of the old editions (dev: A-C, heldout: D-F) comes back, in any kind."""
    old = _old_sentences()
    assert len(old) > 40
    mine = {_norm(s) for c in cases for s in _sentences(c["findings"])}
    normals = {_norm(s) for c in cases if c["kind"] in ("normal", "negation") for s in _sentences(c["findings"])}
    assert len(normals) >= 60
    assert not normals & old
    assert not mine & old
    assert not mine & _old_phrases()


def test_no_text_of_an_old_edition(cases: list[dict]) -> None:
    old = {c["findings"] for edition in ("dev", "heldout") for c in templated_cases(edition)}
    assert len(old) > 300
    assert not {c["findings"] for c in cases} & old


def test_describe(cases: list[dict]) -> None:
    d = describe(cases)
    assert sum(d["kind"].values()) == len(cases) == sum(d["writer"].values())
    assert d["finding"]["pleural effusion present"] > 0 and d["finding"]["pneumothorax uncertain"] > 0
    table = format_description(cases)
    assert "| critical |" in table and "| hiatal hernia |" in table
