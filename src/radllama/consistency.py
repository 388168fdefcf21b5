"""The clinical consistency check shipped with every impression: is the impression true to its findings?

A pure function over (findings, impression), beside the labeller so that generate, compare, serve and the
pages share it (docs/DESIGN.md). It reads both texts with :mod:`radllama.labeller` (same clauses, normals,
negation and uncertainty cues) plus two acute observations the CheXpert labeller lacks (free air, a
malpositioned tube or line), which stay out of the 13 findings scored by the clinical F1.

- **omitted**: an :data:`ACUTE` finding the findings state as present (and not as old, healed, chronic or
  otherwise minor: :data:`MINOR_QUALIFIERS`) that the impression neither names (present or uncertain) nor
  covers by an equivalent or broader name (:data:`COVERED_BY`).
- **unsupported**: an :data:`ACUTE` finding the impression states as present that the findings state as
  absent or never mention, again up to :data:`COVERED_BY` (``"Stable cardiomegaly"`` for ``"Heart size
  normal"``).
- **side_mismatch**: a finding both texts state with a side, where the impression names a side the findings
  do not (findings ``left pneumothorax``, impression ``right pneumothorax``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from radllama.labeller import PRESENT, UNCERTAIN, Mention, compile_mentions, find_mentions

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

# The acute findings a radiologist must see in the impression (and must not see invented there).
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
    "Lung Opacity",
    FREE_AIR,
    MALPOSITIONED_DEVICE,
)

# Names that say a finding in other (equivalent or broader) words: an impression naming any of
# COVERED_BY[x] covers finding x, and findings naming any of COVERED_BY[x] support an impression's x.
# A consolidation is an opacity, a pneumonia usually shows as one, and radiologists write
# "atelectasis or consolidation" for one density; an enlarged heart is an enlarged cardiomediastinum.
_AIRSPACE = frozenset({"Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis", "Edema"})
COVERED_BY: dict[str, frozenset[str]] = {
    "Lung Opacity": _AIRSPACE | {"Lung Lesion"},
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

# Words in a finding's clause that make it old or minor: an impression may leave it out.
MINOR_QUALIFIERS = re.compile(
    r"\b(old|healed|healing|remote|chronic|prior|previous|calcified|granulom\w*|scar\w*|degenerative"
    r"|postsurgical|post-surgical|postoperative)\b"
)

SIDES = ("left", "right", "bilateral")
_SIDE_RE = re.compile(r"\b(left|right|bilateral(?:ly)?|both|bibasilar|bibasal|biapical|bibasally)\b")


def _mentions(text: str) -> list[Mention]:
    return find_mentions(text or "", _EXTRA_RE)


def _stated(mentions: Iterable[Mention], labels: Sequence[str]) -> set[str]:
    return {m.observation for m in mentions if m.label in labels}


def stated(text: str, labels: Sequence[str] = (PRESENT, UNCERTAIN)) -> set[str]:
    """The observations a text states with one of ``labels`` (CheXpert's and the two extra acute ones)."""
    return _stated(_mentions(text), labels)


def _is_minor(m: Mention) -> bool:
    return bool(MINOR_QUALIFIERS.search(m.clause))


def _mention_sides(m: Mention) -> set[str]:
    """Sides a mention names: the side words before or in it in its phrase, else just after it."""
    before = m.clause[: m.end].rsplit(",", 1)[-1]
    words = _SIDE_RE.findall(before)
    if not words:
        after = m.clause[m.end :].split(",", 1)[0]
        # "effusion on the left", "opacity in the right lower lobe": a few words at most.
        near = " ".join(after.split()[:5])
        words = _SIDE_RE.findall(near)[:1]
    out: set[str] = set()
    for w in words:
        out |= {"left"} if w == "left" else {"right"} if w == "right" else {"left", "right"}
    return out


def _side_name(sides: set[str]) -> str:
    return "bilateral" if sides >= {"left", "right"} else next(iter(sides))


def finding_sides(text: str) -> dict[str, str]:
    """Each positive finding's side in a text: ``{"Pneumothorax": "left"}`` (left, right or bilateral).

    Findings stated without a side are left out; one named on both sides reads as bilateral.
    """
    return {obs: _side_name(s) for obs, s in _sides_by_observation(_mentions(text)).items()}


def _sides_by_observation(mentions: Iterable[Mention]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in mentions:
        if m.label == PRESENT and (sides := _mention_sides(m)):
            out.setdefault(m.observation, set()).update(sides)
    return out


def check(findings: str, impression: str) -> dict[str, list[str]]:
    """Compare an impression with its findings: omitted, unsupported and wrong-side acute findings.

    Returns ``{"omitted": [...], "unsupported": [...], "side_mismatch": [...]}``, each a sorted list of
    observation names (from :data:`ACUTE`); empty lists when the impression is consistent.
    """
    f_mentions, i_mentions = _mentions(findings), _mentions(impression)
    f_present = {m.observation for m in f_mentions if m.label == PRESENT and not _is_minor(m)}
    f_stated = _stated(f_mentions, (PRESENT, UNCERTAIN))
    i_named = _stated(i_mentions, (PRESENT, UNCERTAIN))
    i_present = _stated(i_mentions, (PRESENT,))
    omitted = [o for o in ACUTE if o in f_present and not COVERED_BY[o] & i_named]
    unsupported = [o for o in ACUTE if o in i_present and not COVERED_BY[o] & f_stated]
    f_sides, i_sides = _sides_by_observation(f_mentions), _sides_by_observation(i_mentions)
    mismatch = []
    for obs in ACUTE:
        said = i_sides.get(obs)
        known = set().union(*(f_sides.get(o, set()) for o in COVERED_BY[obs]))
        if said and known and not said <= known:
            mismatch.append(obs)
    return {"omitted": sorted(omitted), "unsupported": sorted(unsupported), "side_mismatch": sorted(mismatch)}


def flagged(result: dict[str, list[str]]) -> bool:
    """Whether a check result warns about anything (an omission, an unsupported finding or a wrong side)."""
    return any(result.get(key) for key in ("omitted", "unsupported", "side_mismatch"))
