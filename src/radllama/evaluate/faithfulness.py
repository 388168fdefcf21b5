"""The clinical faithfulness benchmark: does an impression name the acute finding its findings state?

Built by :mod:`radllama.evaluate.faithfulness_cases` from our own phrasings and from positive sentences of
train (``dev`` edition) or validation (``heldout`` edition) reports, never from test. Scored per system:

- ``recall``: critical cases whose impression names the finding (the labeller, with the consistency check's
  equivalent names: "pneumonia" names a consolidation), and ``recall_keyword``, a plain keyword check as a
  second opinion;
- ``invented``: normal cases whose impression states any positive finding;
- ``laterality``: of the sided critical cases whose impression names the finding, the share that names it on
  the findings' side and not on the other (``side_flips`` counts the other side);
- ``negation``: negation cases whose impression does not turn the negated finding positive;
- ``omissions_flagged``: of the critical cases whose impression omits the finding, the share the shipped
  consistency check (:func:`radllama.consistency.check`) flags as omitted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from radllama.consistency import COVERED_BY, FREE_AIR, MALPOSITIONED_DEVICE, check, finding_sides, stated
from radllama.data.records import split_sentences
from radllama.evaluate.faithfulness_cases import (
    EDITIONS,
    FINDING_TYPES,
    sourced_cases,
    templated_cases,
)
from radllama.labeller import FINDINGS, PRESENT

# The labeller's observation for each benchmark finding type.
TYPE_OBSERVATION: dict[str, str] = {
    "pneumothorax": "Pneumothorax",
    "pleural effusion": "Pleural Effusion",
    "consolidation": "Consolidation",
    "pulmonary edema": "Edema",
    "cardiomegaly": "Cardiomegaly",
    "lung mass": "Lung Lesion",
    "fracture": "Fracture",
    "free air": FREE_AIR,
    "malpositioned tube": MALPOSITIONED_DEVICE,
    "collapse": "Atelectasis",
    "widened mediastinum": "Enlarged Cardiomediastinum",
}
# The second opinion: words a reader would look for.
KEYWORDS: dict[str, str] = {
    "pneumothorax": r"pneumothora",
    "pleural effusion": r"effusion|pleural fluid|hydrothorax",
    "consolidation": r"consolidat|pneumonia|airspace (disease|opacit)",
    "pulmonary edema": r"edema|congestion|heart failure|chf",
    "cardiomegaly": r"cardiomegaly|enlarged (heart|cardiac)|(heart|cardiac silhouette) (is )?(\w+ )?enlarged"
    r"|cardiac enlargement",
    "lung mass": r"\bmass|neoplas|tumou?r|malignan|carcinoma",
    "fracture": r"fractur",
    "free air": r"free (intraperitoneal )?air|pneumoperitoneum",
    "malpositioned tube": r"malposit|main ?stem|main bronchus|coiled|reposition|withdraw|advance",
    "collapse": r"collapse|atelecta",
    "widened mediastinum": r"mediastin\w* (is )?(\w+ )?(widen|enlarg)|widen\w* (of the )?(superior )?mediastin",
}
_KEYWORD_RE = {t: re.compile(p) for t, p in KEYWORDS.items()}
_NEGATED_SENTENCE = re.compile(r"^\s*(\d+\.\s*)?(no|without|negative|resolved|there is no|there are no)\b")
# Mapped back from the labeller, for picking real positive sentences. A lung mass must say "mass" (OpenI's
# nodules are mostly granulomas), a collapse "collapse" or a lobe, a fracture must not be old or healed.
_SOURCE_GUARD: dict[str, re.Pattern[str]] = {
    "lung mass": re.compile(r"\bmass\b"),
    "collapse": re.compile(r"collapse|\blobe\b"),
    "fracture": re.compile(r"^(?!.*\b(old|healed|healing|remote|chronic)\b)"),
}
_OBSERVATION_TYPE = {o: t for t, o in TYPE_OBSERVATION.items()}


def names(impression: str, finding: str) -> bool:
    """The impression names ``finding`` (present or uncertain), in its own or an equivalent name."""
    return bool(COVERED_BY[TYPE_OBSERVATION[finding]] & stated(impression))


def names_keyword(impression: str, finding: str) -> bool:
    """Second opinion: a sentence of the impression, not opening with a negation, has the finding's word."""
    for sentence in split_sentences((impression or "").lower(), clauses=True):
        if _KEYWORD_RE[finding].search(sentence) and not _NEGATED_SENTENCE.search(sentence):
            return True
    return False


def positives(impression: str) -> set[str]:
    """Positive findings an impression states (the 13 CheXpert findings and the two extra acute ones)."""
    return {o for o in stated(impression, (PRESENT,)) if o in FINDINGS or o in (FREE_AIR, MALPOSITIONED_DEVICE)}


def sentence_finding(sentence: str) -> str | None:
    """The one benchmark finding type a real findings sentence states plainly (None: none, several, hedged)."""
    present = stated(sentence, (PRESENT,)) - {"Support Devices", "Lung Opacity"}
    if stated(sentence) - stated(sentence, (PRESENT,)) or len(present) != 1:
        return None  # uncertain, or more than one finding
    finding = _OBSERVATION_TYPE.get(next(iter(present)))
    guard = _SOURCE_GUARD.get(finding or "")
    if finding is None or (guard is not None and not guard.search(sentence.lower())):
        return None
    # Acute by the shipped definition: "stable cardiomegaly" or "minimal atelectasis" is no critical finding.
    return finding if TYPE_OBSERVATION[finding] in check(sentence, "")["omitted"] else None


def build_benchmark(edition: str, records: Sequence[dict], seed: int = 0, per_type: int = 4) -> list[dict]:
    """The edition's cases: templated phrasings plus real positive sentences from ``records`` (its split)."""
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {sorted(EDITIONS)}")
    return templated_cases(edition, seed) + sourced_cases(edition, records, sentence_finding, per_type, seed)


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def score(cases: Sequence[dict], impressions: Sequence[str]) -> dict:
    """The benchmark's figures for one system's impressions (one per case, in order)."""
    recall = keyword = invented = negation_kept = flagged = 0
    n_crit = n_norm = n_neg = lateral_named = lateral_kept = flips = 0
    by_type: dict[str, list[int]] = {t: [0, 0] for t in FINDING_TYPES}
    missed: list[str] = []
    for case, text in zip(cases, impressions, strict=True):
        if case["kind"] == "critical":
            n_crit += 1
            hit = names(text, case["finding"])
            recall += hit
            keyword += names_keyword(text, case["finding"])
            by_type[case["finding"]][0] += hit
            by_type[case["finding"]][1] += 1
            if not hit:
                missed.append(case["id"])
                # Would the shipped consistency check have warned the reader of this omission?
                flagged += TYPE_OBSERVATION[case["finding"]] in check(case["findings"], text)["omitted"]
            if hit and case.get("side") in ("left", "right"):
                lateral_named += 1
                side = finding_sides(text).get(TYPE_OBSERVATION[case["finding"]])
                lateral_kept += side == case["side"]
                flips += side is not None and side != case["side"]
        elif case["kind"] == "normal":
            n_norm += 1
            invented += bool(positives(text))
        elif case["kind"] == "negation":
            n_neg += 1
            negation_kept += TYPE_OBSERVATION[case["negated"]] not in stated(text, (PRESENT,))
    return {
        "n": {"critical": n_crit, "normal": n_norm, "negation": n_neg, "lateral_named": lateral_named},
        "recall": _rate(recall, n_crit),
        "recall_keyword": _rate(keyword, n_crit),
        "invented": _rate(invented, n_norm),
        "laterality": _rate(lateral_kept, lateral_named),
        "side_flips": flips,
        "negation": _rate(negation_kept, n_neg),
        "omissions_flagged": _rate(flagged, len(missed)),
        "recall_by_type": {t: _rate(h, n) for t, (h, n) in by_type.items() if n},
        "missed": missed,
    }


def describe(cases: Sequence[dict]) -> dict:
    """Counts of a benchmark edition: by kind, by finding type, by origin, by writer."""
    return {k: dict(Counter(str(c.get(k)) for c in cases)) for k in ("kind", "finding", "origin", "writer")}
