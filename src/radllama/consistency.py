"""The clinical consistency check shipped with every impression: is the impression true to its findings?

A pure function over (findings, impression), beside the labeller so that generate, compare, serve and the
pages share it (docs/DESIGN.md). It reads both texts with :mod:`radllama.labeller` (same clauses, normals,
negation and uncertainty cues) plus two acute observations the CheXpert labeller lacks (free air, a
malpositioned tube or line), which stay out of the 13 findings scored by the clinical F1.

- **omitted**: an :data:`ACUTE` finding the findings state as present (and not as old, stable, mild or
  otherwise minor: :data:`MINOR_ANY`, :data:`MINOR_BY_OBSERVATION`) that the impression neither names
  (present or uncertain) nor covers by an equivalent or broader name (:data:`COVERED_BY`).
- **unsupported**: an :data:`ACUTE` finding the impression states as present that the findings state as
  absent or never mention, again up to :data:`COVERED_BY` and the signs in :data:`SUPPORTED_BY`
  (``"Stable cardiomegaly"`` for ``"Heart size normal"``).
- **side_mismatch**: a finding both texts state with a side, where the impression names a side the findings
  do not (findings ``left pneumothorax``, impression ``right pneumothorax``); hedged findings count with their side.
- **hedge_dropped**: an :data:`ACUTE` finding the findings only hedge (``cannot exclude small left effusion``,
  ``possible early pneumonia``; uncertain, not minor, and not also stated as present) that the impression neither
  names (present or uncertain) nor covers (:data:`COVERED_BY`). "omitted" keeps its meaning (a finding stated
  as present): a hedged finding left out is reported apart, so that figures of "omitted" stay comparable.
- **hedge_asserted**: an :data:`ACUTE` finding the impression states as certain (present, never hedged there)
  that the findings only hedge: they state it as uncertain and never as present, by that name or an
  equivalent one (:data:`COVERED_BY` less the bare Lung Opacity), nor by a sign (:data:`SUPPORTED_BY`).

A finding that was there and is gone ("Previously seen left pneumothorax is no longer visible", "the
consolidation, atelectasis and blunting have cleared") is read as absent (:data:`RESOLVED_AFTER`), here and
in everything built on this module's readings (:func:`stated`, :func:`finding_sides`, the decoder's candidates).
The labeller (:mod:`radllama.labeller`) is the clinical F1's instrument, frozen with its measured figures
(tests/test_clinical_instrument.py), so this rule sits here, not in its cue tables.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from radllama.labeller import ABSENT, PRESENT, UNCERTAIN, Mention, compile_mentions, find_mentions, rules_digest

FREE_AIR = "Free Air"
MALPOSITIONED_DEVICE = "Malpositioned Device"

# Acute observations outside CheXpert's 14, labelled with the same negation/uncertainty machinery.
EXTRA_MENTIONS: dict[str, list[str]] = {
    FREE_AIR: [
        r"pneumoperitoneum",
        r"free (intraperitoneal |intra-abdominal |intraabdominal |peritoneal |subdiaphragmatic )?(air|gas)",
        r"(sub-?diaphragmatic|subphrenic|intraperitoneal) (free )?(air|gas|lucency|lucencies)",
        r"(air|gas|lucency) (is )?(seen |present )?(under|beneath|below) the (right |left |bilateral )?"
        r"(hemi-?)?diaphragms?",
    ],
    MALPOSITIONED_DEVICE: [
        r"mal-?position\w*",
        r"(tube|tip|catheter|line|cannula)[^,]{0,40}?\b(in|into|within|at|enter\w*|extend\w*)( the)?"
        r" (right|left) (main ?stem|main) (bronch\w*)?",
        # A feeding or enteric tube has no business in any bronchus.
        r"(feeding|enteric|nasogastric|orogastric|ng|og|dobhoff) tube[^,]{0,40}?\b(in|into|within)( the)?"
        r" (\w+ ){0,3}bronch\w*",
        r"(right|left) main ?stem (bronchus )?intubation",
        r"(tube|tip|catheter)[^,]{0,40}?\bcoil\w*",
        r"coil\w* (\w+ ){0,3}(tube|catheter)",
        r"(tube|tip|catheter|line)[^,]{0,30}?\b(terminat\w*|ends?|lies|is|are) (\w+ ){0,2}(in|within|at) the"
        r" (\w+ )?(esophag\w*|pharynx|hypopharynx|oropharynx)",
        r"(tube|tip|catheter|line)[^,]{0,30}?\b(too (high|low|deep|proximal|distal)|(high|low)-?riding)",
        r"(should|could|may) be (advanced|withdrawn|retracted|pulled back|repositioned)",
        r"recommend (advanc|withdraw|retract|reposition)\w*",
    ],
}
_EXTRA_RE = compile_mentions(EXTRA_MENTIONS)

# The acute findings a radiologist must see in the impression (and must not see invented there). A bare
# "opacity" or "density" is not among them: findings use those words for anything from a nipple shadow to
# interstitial markings, so Lung Opacity only counts as a name that covers or supports the others.
ACUTE: tuple[str, ...] = (
    "Pneumothorax",
    "Pleural Effusion",
    "Consolidation",
    "Pneumonia",
    "Edema",
    "Cardiomegaly",
    "Lung Lesion",
    "Fracture",
    "Atelectasis",
    "Enlarged Cardiomediastinum",
    FREE_AIR,
    MALPOSITIONED_DEVICE,
)

# Names that say a finding in other (equivalent or broader) words: an impression naming any of
# COVERED_BY[x] covers finding x, and findings naming any of COVERED_BY[x] support an impression's x.
# A consolidation is an opacity, a pneumonia usually shows as one, and radiologists write
# "atelectasis or consolidation" for one density; an enlarged heart is an enlarged cardiomediastinum.
COVERED_BY: dict[str, frozenset[str]] = {
    "Consolidation": frozenset({"Consolidation", "Pneumonia", "Lung Opacity", "Atelectasis"}),
    "Pneumonia": frozenset({"Pneumonia", "Consolidation", "Lung Opacity"}),
    "Atelectasis": frozenset({"Atelectasis", "Consolidation", "Lung Opacity"}),
    "Edema": frozenset({"Edema", "Lung Opacity"}),
    "Lung Lesion": frozenset({"Lung Lesion", "Lung Opacity"}),
    "Cardiomegaly": frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"}),
    "Enlarged Cardiomediastinum": frozenset({"Enlarged Cardiomediastinum", "Cardiomegaly"}),
    "Pneumothorax": frozenset({"Pneumothorax"}),
    "Pleural Effusion": frozenset({"Pleural Effusion"}),
    "Fracture": frozenset({"Fracture"}),
    FREE_AIR: frozenset({FREE_AIR}),
    MALPOSITIONED_DEVICE: frozenset({MALPOSITIONED_DEVICE}),
}

# Findings phrases that support an impression's finding without naming it: the signs radiologists
# conclude from (blunted costophrenic angles for an effusion, a heart at the upper limit of normal for a
# "borderline cardiomegaly", prominent vessels for congestion). They only ever support, never flag.
SUPPORTED_BY: dict[str, re.Pattern[str]] = {
    "Pleural Effusion": re.compile(
        r"\b(costophrenic|cp)\b[^.]{0,40}\bblunt\w*|\bblunt\w*[^.]{0,30}\b(costophrenic|cp)\b"
    ),
    "Cardiomegaly": re.compile(
        r"\b(heart|cardiac)\b[^.]{0,40}\b(upper limits? of normal|upper normal|upper limits normal|top normal"
        r"|top-normal|borderline|high normal|limits of normal size)"
    ),
    "Edema": re.compile(
        r"\b(prominen\w*|increased|enlarged|engorge\w*|accentuat\w*|congest\w*)\b[^.]{0,30}\bvascula\w*"
        r"|\bvascula\w*[^.]{0,30}\b(prominen\w*|increased|enlarged|engorge\w*|accentuat\w*|congest\w*)"
    ),
}

# Qualifiers that make a stated finding old, known, minor or not real (an overlapping shadow), so the
# impression may leave it out; read in the finding's own phrase (between commas). For every observation:
MINOR_ANY = re.compile(
    r"\b(old|healed|healing|remote|chronic\w*|calcifi\w*|granulom\w*|scar\w*|degenerative|post-?surgical"
    r"|post-?operative|stable|unchanged|again|redemonstrat\w*|similar|known|soft tissues?|nipples?|breasts?"
    r"|artifact\w*|overlap\w*|superimpos\w*|confluence)\b"
)
# ... and per observation: a mild or borderline heart, plate-like or basilar atelectasis, a small nodule,
# a vertebral compression or a broken sternotomy wire are reported, rarely repeated in the impression.
MINOR_BY_OBSERVATION: dict[str, re.Pattern[str]] = {
    "Cardiomegaly": re.compile(
        r"\b(mild\w*|borderline|slight\w*|minimal\w*|persistent\w*|remains?|top normal|upper limits?)\b"
    ),
    "Atelectasis": re.compile(
        r"\b(mild\w*|minimal\w*|subsegmental|plate-?like|discoid|linear|streaky|strand\w*|band\w*|bibasilar"
        r"|basilar|bibasal|basal|bases?|dependent|compressive|adjacent|small|trace|minor|patchy|scattered"
        r"|low (lung )?volumes?|hypoinflat\w*|underinflat\w*|elevat\w*|draped)\b"
    ),
    "Lung Lesion": re.compile(
        r"\b(subcentimeter|tiny|small|\d+ ?mm|nodular (opacit\w*|densit\w*|interstiti\w*|prominence))\b"
    ),
    "Fracture": re.compile(
        r"\b(vertebra\w*|compression|sternotomy|fixation|history of|evaluat\w*|wires?|catheter"
        r"|pacemaker|leads?)\b"
    ),
}
# A finding that was there and is gone, said after it in its clause: "Previously seen left pneumothorax is no
# longer visible", "Consolidation, atelectasis, and costophrenic blunting in the left lower lobe have cleared". The
# labeller reads a cue after a mention only up to the next comma and has no "no longer visible"; here the cue
# reaches back over a list of findings as long as no other verb stands between ("Left effusion is unchanged and the
# right effusion has resolved" resolves only the right one). Tuned on train + validation reports.
RESOLVED_AFTER = re.compile(
    r"\b(?:(?:is|are|has been|have been) )?no longer (?:\w+ly )?(?:seen|visible|visuali[sz]ed|identified|present"
    r"|evident|apparent|appreciated|demonstrated|noted|detected|appreciable|identifiable|there)\b"
    r"|\b(?:has|have) (?:since |now |almost |nearly |completely |entirely |largely |essentially )?"
    r"(?:resolved|cleared)\b"
)
# "No focal airspace opacity to suggest a pneumonia", "no pleural line to suggest pneumothorax": the labeller's
# nearest cue is "suggest" (uncertain), but the sentence negates the sign that would suggest it. Read as absent.
_NEGATED_SUGGEST_RE = re.compile(
    r"\b(?:no|not|without|negative for)\b[^,]*\bto (?:suggest|indicate)\b(?:\s+\S+){0,3}\s*$"
)
_FINITE_VERB_RE = re.compile(
    r"\b(is|are|was|were|has|have|had|remains?|persists?|shows?|demonstrates?|appears?|measures?|seems?)\b"
)
# An impression's hedge or advice is no claim: "please note that fractures may not be demonstrated".
_ADVICE_RE = re.compile(r"\b(may not be|please note|consider|additional imaging|if clinically)\b")

# The keys of a check's result: the fields every impression carries (predictions files, the API).
FIELDS: tuple[str, ...] = ("omitted", "unsupported", "side_mismatch", "hedge_dropped", "hedge_asserted")
SIDES = ("left", "right", "bilateral")
_SIDE_RE = re.compile(r"\b(left|right|bilateral(?:ly)?|both|bibasilar|bibasal|biapical|bibasally)\b")


def _resolved(m: Mention) -> bool:
    """Whether a finding is said to be gone after its mention (:data:`RESOLVED_AFTER`), no other verb between."""
    after = m.clause[m.end :]
    cue = RESOLVED_AFTER.search(after)
    return cue is not None and not _FINITE_VERB_RE.search(after[: cue.start()])


def _gone(m: Mention) -> bool:
    """A mention the labeller reads as present or uncertain that says the finding is not there: resolved since
    the prior study, or the object of a negated sign ("no opacity to suggest pneumonia")."""
    if m.label == ABSENT:
        return False
    return _resolved(m) or (m.label == UNCERTAIN and _NEGATED_SUGGEST_RE.search(m.clause[: m.start]) is not None)


def _mentions(text: str) -> list[Mention]:
    return [replace(m, label=ABSENT) if _gone(m) else m for m in find_mentions(text or "", _EXTRA_RE)]


def _stated(mentions: Iterable[Mention], labels: Sequence[str]) -> set[str]:
    return {m.observation for m in mentions if m.label in labels}


def stated(text: str, labels: Sequence[str] = (PRESENT, UNCERTAIN)) -> set[str]:
    """The observations a text states with one of ``labels`` (CheXpert's and the two extra acute ones)."""
    return _stated(_mentions(text), labels)


_ALTERNATIVE_RE = re.compile(r"\s*,?\s*(?:or|and/or)\s+(?:\w+\s+){0,3}")


def _alternatives(mentions: Sequence[Mention]) -> set[str]:
    """Observations an impression gives as alternatives ("atelectasis or pneumonia"): a differential, a hedge."""
    out: set[str] = set()
    for a in mentions:
        for b in mentions:
            if a.clause == b.clause and a.end <= b.start and a.observation != b.observation:
                if _ALTERNATIVE_RE.fullmatch(a.clause[a.end : b.start]):
                    out |= {a.observation, b.observation}
    return out


def _phrase(m: Mention) -> str:
    """The comma-bounded phrase of a mention in its clause."""
    return m.clause[: m.start].rsplit(",", 1)[-1] + m.clause[m.start :].split(",", 1)[0]


def _is_minor(m: Mention) -> bool:
    phrase = _phrase(m)
    specific = MINOR_BY_OBSERVATION.get(m.observation)
    return bool(MINOR_ANY.search(phrase) or (specific and specific.search(phrase)))


def _mention_sides(m: Mention) -> set[str]:
    """Sides a mention names: the side words before or in it in its phrase, else just after it."""
    before = m.clause[: m.end].rsplit(",", 1)[-1]
    words = _SIDE_RE.findall(before)
    if not words:
        after = m.clause[m.end :].split(",", 1)[0]
        # "effusion on the left", "opacity in the right lower lobe": a few words at most.
        near = " ".join(after.split()[:8])
        words = _SIDE_RE.findall(near)[:1]
    out: set[str] = set()
    for w in words:
        out |= {"left"} if w == "left" else {"right"} if w == "right" else {"left", "right"}
    return out


def _side_name(sides: set[str]) -> str:
    return "bilateral" if sides >= {"left", "right"} else next(iter(sides))


def finding_sides(text: str, labels: Sequence[str] = (PRESENT,)) -> dict[str, str]:
    """Each positive finding's side in a text: ``{"Pneumothorax": "left"}`` (left, right or bilateral).

    Findings stated without a side are left out; one named on both sides reads as bilateral. ``labels``: the
    statuses that count (``(PRESENT, UNCERTAIN)`` adds the sides of hedged findings).
    """
    return {obs: _side_name(s) for obs, s in _sides_by_observation(_mentions(text), labels).items()}


def _sides_by_observation(mentions: Iterable[Mention], labels: Sequence[str] = (PRESENT,)) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in mentions:
        if m.label in labels and (sides := _mention_sides(m)):
            out.setdefault(m.observation, set()).update(sides)
    return out


def check(findings: str, impression: str) -> dict[str, list[str]]:
    """Compare an impression with its findings: omitted, unsupported, wrong-side and hedged acute findings.

    Returns ``{"omitted": [...], "unsupported": [...], "side_mismatch": [...], "hedge_dropped": [...],
    "hedge_asserted": [...]}`` (:data:`FIELDS`), each a sorted list of observation names (from :data:`ACUTE`);
    empty lists when the impression is consistent.
    """
    f_mentions, i_mentions = _mentions(findings), _mentions(impression)
    f_present = {m.observation for m in f_mentions if m.label == PRESENT and not _is_minor(m)}
    f_signs = {o for o, pattern in SUPPORTED_BY.items() if pattern.search((findings or "").lower())}
    f_stated = _stated(f_mentions, (PRESENT, UNCERTAIN)) | f_signs
    # A hedge in advice ("if there is concern for fracture consider rib series") raises no finding.
    f_hedged = {
        m.observation for m in f_mentions
        if m.label == UNCERTAIN and not _is_minor(m) and not _ADVICE_RE.search(m.clause)
    } - f_present  # fmt: skip
    f_certain = _stated(f_mentions, (PRESENT,)) | f_signs
    i_named = _stated(i_mentions, (PRESENT, UNCERTAIN))
    i_claims = {m.observation for m in i_mentions if m.label == PRESENT and not _ADVICE_RE.search(m.clause)}
    i_hedges = _stated(i_mentions, (UNCERTAIN,)) | _alternatives(i_mentions)
    omitted = [o for o in ACUTE if o in f_present and not COVERED_BY[o] & i_named]
    unsupported = [o for o in ACUTE if o in i_claims and not COVERED_BY[o] & f_stated]
    hedge_dropped = [o for o in ACUTE if o in f_hedged and not COVERED_BY[o] & i_named]
    # Asserted: the impression claims what the findings only hedge, under no certain equivalent name or sign.
    certain_names = {o: (COVERED_BY[o] - {"Lung Opacity"}) & f_certain for o in ACUTE}
    hedge_asserted = [o for o in ACUTE if o in i_claims - i_hedges and o in f_hedged and not certain_names[o]]
    hedged = (PRESENT, UNCERTAIN)  # a hedged finding keeps its side too
    f_sides, i_sides = _sides_by_observation(f_mentions, hedged), _sides_by_observation(i_mentions, hedged)
    mismatch = []
    for obs in ACUTE:
        said = i_sides.get(obs)
        known = set().union(*(f_sides.get(o, set()) for o in COVERED_BY[obs]))
        if said and known and not said <= known:
            mismatch.append(obs)
    return {
        "omitted": sorted(omitted),
        "unsupported": sorted(unsupported),
        "side_mismatch": sorted(mismatch),
        "hedge_dropped": sorted(hedge_dropped),
        "hedge_asserted": sorted(hedge_asserted),
    }


def flagged(result: dict[str, list[str]]) -> bool:
    """Whether a check result warns about anything (an omission, an unsupported finding, a wrong side, a hedged
    finding dropped or asserted)."""
    return any(result.get(key) for key in FIELDS)


_WARNINGS = {
    "omitted": "the findings state {}, the impression does not",
    "unsupported": "the impression states {}, the findings do not support it",
    "side_mismatch": "the impression puts {} on another side than the findings",
    "hedge_dropped": "the findings raise the possibility of {}, the impression does not mention it",
    "hedge_asserted": "the impression states {} as certain, the findings only raise the possibility",
}


def warnings(result: dict[str, list[str]]) -> list[str]:
    """One plain sentence per kind of problem in a check result (none when it is consistent)."""
    return [_WARNINGS[key].format(", ".join(result[key])) for key in FIELDS if result.get(key)]


def check_digest() -> str:
    """A short hash of the check's definition (the labeller's rules and every table above): outputs decided
    with the check, such as clinically guided MBR, record it so that a changed definition redoes them."""
    tables = {
        "labeller": rules_digest(), "extra": EXTRA_MENTIONS, "acute": ACUTE,
        "covered_by": {k: sorted(v) for k, v in COVERED_BY.items()},
        "supported_by": {k: v.pattern for k, v in SUPPORTED_BY.items()}, "minor": MINOR_ANY.pattern,
        "minor_by": {k: v.pattern for k, v in MINOR_BY_OBSERVATION.items()}, "advice": _ADVICE_RE.pattern,
        "sides": _SIDE_RE.pattern, "resolved": RESOLVED_AFTER.pattern, "finite_verb": _FINITE_VERB_RE.pattern,
        "negated_suggest": _NEGATED_SUGGEST_RE.pattern, "alternative": _ALTERNATIVE_RE.pattern,
        "fields": FIELDS,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16]
