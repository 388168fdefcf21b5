"""The clinical instrument is frozen: the labeller's rule tables and the MeSH map must be the ones whose
agreement BENCHMARKS.md reports (in sample on train + validation, held out on test). A rule change fails
here until the bench is rerun (`python bench/bench_clinical_agreement.py`), which records the new digests
beside the new figures: the held-out figure is then measured, never tuned on."""

from __future__ import annotations

import re
from pathlib import Path

from radllama.evaluate.mesh_agreement import map_digest
from radllama.labeller import rules_digest

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def _recorded(name: str) -> str:
    found = re.findall(rf"{name} digest `([0-9a-f]{{16}})`", BENCHMARKS.read_text(encoding="utf-8"))
    assert len(found) == 1, f"BENCHMARKS.md should record the {name} digest once (rerun the clinical bench)"
    return found[0]


def test_labeller_rules_are_the_measured_ones() -> None:
    assert rules_digest() == _recorded("labeller rules"), "labeller rules changed: rerun the clinical bench"


def test_mesh_map_is_the_measured_one() -> None:
    assert map_digest() == _recorded("MeSH map"), "MeSH map changed: rerun the clinical bench"


def test_digest_sees_a_rule_change(monkeypatch) -> None:  # noqa: ANN001
    import radllama.labeller as labeller

    before = rules_digest()
    monkeypatch.setitem(labeller.MENTIONS, "Edema", [*labeller.MENTIONS["Edema"], r"fluid overload"])
    assert rules_digest() != before
