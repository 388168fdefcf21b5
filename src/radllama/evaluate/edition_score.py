"""Scoring impressions against a frozen benchmark edition's expectations (issue #30), by a reader.

Each case of a frozen edition (:mod:`radllama.evaluate.editions`) lists what a correct impression says:
findings ``present`` (named), ``uncertain`` (named with the hedge kept) and ``absent`` (not asserted). A
*reader* says how an impression states each finding. Two readers score every system side by side:

- ``judge``: the independent reader (:mod:`radllama.evaluate.judge`), which no decoder, penalty or candidate
  filter uses; the headline;
- ``ours``: the labeller and the consistency check's equivalent names, the rules the faithful decoder chooses
  with; shown beside it, never alone.

Figures, each over the cases of the kinds where it means something (``None`` where there are none):

- ``named``: expected present findings the impression names (present or hedged) in critical, comparison and
  device cases; ``multi_all_named``: multi-finding cases with every finding named;
- ``hedge_kept``: expected uncertain findings named as uncertain; ``hedge_dropped`` (not named) and
  ``hedge_asserted`` (named as present) are the two ways to lose it;
- ``resolved_asserted``: findings a resolved case says are gone (or negates, or calls normal) that the
  impression asserts;
- ``invented_normal`` / ``invented_negation``: normal and negation cases whose impression asserts any finding
  of the edition's types; ``invented_any``: the same over every kind (a finding asserted that the case does
  not list as present or uncertain);
- ``side_kept``: named lateralised findings given their side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

PRESENT, UNCERTAIN, NEGATED, HISTORICAL = "present", "uncertain", "negated", "historical"
NAMING_KINDS = ("critical", "comparison", "device")
FIGURES = (
    "named", *(f"named_{k}" for k in NAMING_KINDS), "multi_all_named", "hedge_kept", "hedge_dropped",
    "hedge_asserted", "resolved_asserted", "invented_normal", "invented_negation", "invented_any", "side_kept",
)  # fmt: skip


@dataclass(frozen=True)
class Reader:
    """How one reader states a finding type in a text: its status (present / uncertain / negated /
    historical, None when not mentioned or not readable) and its side."""

    name: str
    status_of: Callable[[str, str], str | None]
    side_of: Callable[[str, str], str | None]
    asserted: Callable[[str], set[str]]  # the finding types stated present


def judge_reader() -> Reader:
    """The independent reader."""
    from radllama.evaluate import judge

    return Reader("judge", judge.status_of, judge.side_of, lambda text: set(judge.findings(text, (PRESENT,))))


def ours_reader() -> Reader:
    """The labeller and the consistency check (the faithful decoder's own rules), mapped to the edition's types."""
    from radllama.consistency import COVERED_BY, finding_sides, stated
    from radllama.evaluate.faithfulness import TYPE_OBSERVATION
    from radllama.labeller import ABSENT
    from radllama.labeller import PRESENT as OURS_PRESENT
    from radllama.labeller import UNCERTAIN as OURS_UNCERTAIN

    observation = {**TYPE_OBSERVATION, "nodule": "Lung Lesion"}  # no rule of ours reads a hiatal hernia

    def status_of(text: str, finding: str) -> str | None:
        obs = observation.get(finding)
        if obs is None:
            return None
        names = COVERED_BY.get(obs, {obs})
        for label, status in ((OURS_PRESENT, PRESENT), (OURS_UNCERTAIN, UNCERTAIN), (ABSENT, NEGATED)):
            if stated(text, (label,)) & names:
                return status
        return None

    def side_of(text: str, finding: str) -> str | None:
        obs = observation.get(finding)
        return finding_sides(text).get(obs) if obs else None

    def asserted(text: str) -> set[str]:
        found = stated(text, (OURS_PRESENT,))
        return {t for t, obs in observation.items() if obs in found}

    return Reader("ours", status_of, side_of, asserted)


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def score_edition(cases: Sequence[dict], impressions: Sequence[str], reader: Reader, types: Sequence[str]) -> dict:
    """One system's figures on an edition (``types``: the edition's finding types), read by ``reader``."""
    counts: dict[str, list[int]] = {}

    def add(key: str, hit: bool) -> None:
        pair = counts.setdefault(key, [0, 0])
        pair[0] += int(hit)
        pair[1] += 1

    missed: list[str] = []
    for case, text in zip(cases, impressions, strict=True):
        kind = case["kind"]
        expected = {e["finding"] for e in case["expect"] if e["status"] in (PRESENT, UNCERTAIN)}
        invented = (reader.asserted(text) & set(types)) - expected
        add("invented_any", bool(invented))
        if kind in ("normal", "negation"):
            add(f"invented_{kind}", bool(invented))
        all_named = True
        for e in case["expect"]:
            status = reader.status_of(text, e["finding"])
            named = status in (PRESENT, UNCERTAIN)
            if e["status"] == PRESENT:
                all_named &= named
                if kind in NAMING_KINDS:
                    add("named", named)
                    add(f"named_{kind}", named)
                if named and e.get("side") in ("left", "right", "bilateral"):
                    add("side_kept", reader.side_of(text, e["finding"]) == e["side"])
            elif e["status"] == UNCERTAIN:
                add("hedge_kept", status == UNCERTAIN)
                add("hedge_dropped", not named)
                add("hedge_asserted", status == PRESENT)
            elif kind == "resolved":  # gone, negated or stated normal: asserting it contradicts the findings
                add("resolved_asserted", status == PRESENT)
        if kind == "multi":
            add("multi_all_named", all_named)
        if not all_named:
            missed.append(case["id"])
    return {
        "reader": reader.name,
        **{key: _rate(*counts.get(key, (0, 0))) for key in FIGURES},
        "n": {key: counts.get(key, (0, 0))[1] for key in FIGURES},
        "missed": missed,
    }


def with_expectations(case: dict) -> dict:
    """A generated-edition case (``dev``: ``kind``, ``finding``, ``side``, ``negated``) in the frozen editions'
    form: a critical finding expected present on its side, a negated one expected absent."""
    if "expect" in case:
        return case
    expect = []
    if case["kind"] == "critical":
        expect.append({"finding": case["finding"], "status": PRESENT, "side": case.get("side")})
    elif case["kind"] == "negation" and case.get("negated"):
        expect.append({"finding": case["negated"], "status": "absent", "side": None})
    return {**case, "expect": expect}


def score_both(cases: Sequence[dict], impressions: Sequence[str], types: Sequence[str]) -> dict[str, dict]:
    """``{"judge": ..., "ours": ...}``: the independent reader's figures, and ours beside them."""
    return {r.name: score_edition(cases, impressions, r, types) for r in (judge_reader(), ours_reader())}
