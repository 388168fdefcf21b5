"""A rule-based CheXpert-style labeller of radiology text, fully offline.

The labeller follows the spirit of the CheXpert/NegBio labeller (Irvin et al. 2019) with
plain regular expressions, so it needs no model download and runs in milliseconds:

1. **Split** the text into sentences (``.``, ``;``, ``!``, ``?``, newlines; decimals kept)
   and each sentence into clauses at scope terminators (``but``, ``however``, ``although``,
   ``which``, ``except``, ``whereas``, ``, there is/are`` ...). A cue never reaches past its clause.
2. **Explicit normals** (``heart size is normal``, ``normal cardiomediastinal silhouette`` ...)
   label an observation *absent* and are blanked so their words cannot fire a mention.
3. **Pseudo-cues** that look like negation but are not (``no change``, ``no significant
   interval change``, ``unchanged``, ``without change``) are blanked before cue search.
4. **Mentions**: synonym phrases per observation (:data:`MENTIONS`).
5. **Cues** in the clause decide each mention: the *nearest preceding* negation or
   uncertainty cue wins, so ``no effusion or pneumothorax`` negates both (coordination) while
   ``no pneumothorax, possible effusion`` leaves the effusion uncertain. Cues that follow the
   mention (``... cannot be excluded``, ``... has resolved``, ``... versus``) apply when no
   comma separates them from it. A following uncertainty cue outranks everything else.
6. **Aggregate** mentions per report: present > uncertain > absent > not mentioned.
7. **No Finding** is present when no observation other than Support Devices is present or
   uncertain and the text says something: a mention, or a normal statement (``normal``, ``no acute``,
   ``clear`` ...); absent when a finding is present or uncertain; not mentioned for an empty text
   or one we cannot read (garbage, another language).

It lives below every user: the clinical score (:mod:`radllama.evaluate.clinical`,
:mod:`radllama.evaluate.metrics`) and the consistency check shipped with every impression
(:mod:`radllama.consistency`). The clinical score is the F1 of the *present* labels of a
prediction against those of its reference (uncertain = not positive on both sides), micro
and macro over the 13 :data:`FINDINGS` and over :data:`COMPETITION5`; No Finding on its own.
The rules were checked against OpenI's manual MeSH coding
(:mod:`radllama.evaluate.mesh_agreement`, docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# The headline averages: the 13 findings (No Finding stays on its own line, never inside an
# average) and the 5 observations of the CheXpert competition.
FINDINGS: tuple[str, ...] = OBSERVATIONS[1:]
COMPETITION5: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
PRESENT, UNCERTAIN, ABSENT, NOT_MENTIONED = "present", "uncertain", "absent", "not mentioned"
_RANK = {PRESENT: 3, UNCERTAIN: 2, ABSENT: 1, NOT_MENTIONED: 0}

# Mention phrases per observation (regex fragments, matched on lower-cased text).
MENTIONS: dict[str, list[str]] = {
    # An *enlarged cardio*mediastinal silhouette counts as Cardiomegaly (below): NLM's indexers
    # coded it "Cardiac Shadow/enlarged" in every OpenI report that says it, never "Mediastinum".
    # A widened or prominent one, and any enlarged *mediastinum*, stay here.
    "Enlarged Cardiomediastinum": [
        r"(enlarged|widened|prominent) mediastin\w*",
        r"(widened|prominent) cardiomediastin\w*",
        r"mediastin\w* (silhouette |contours? )?(is |are )?(\w+ly )?(enlarged|widened|widening|enlargement)",
        r"cardiomediastin\w* (silhouette |contours? )?(is |are )?(\w+ly )?(widened|widening)",
        r"(widening|prominence) of (the )?(upper |superior |right |left )?(cardio)?mediastin\w*",
        r"enlargement of (the )?(upper |superior |right |left )?mediastin\w*",
        r"(prominence|widening) of the (right |left )?paratracheal",
        r"paratracheal (stripe |soft tissue )?(prominence|widening)",
        r"mediastinal (prominence|widening|enlargement)",
    ],
    "Cardiomegaly": [
        r"cardiomegaly",
        r"enlarged (heart|cardiac silhouette|cardiac size)",
        r"(heart|cardiac silhouette|cardiac) (silhouette )?(size )?(is |appears |remains )?"
        r"(again |persistently |still )?(\w+ly |borderline |slightly |mildly to moderately )?(enlarged|large)",
        r"borderline (heart size|cardiac size|cardiomegaly|cardiac enlargement|enlarged heart|enlargement of the)",
        r"enlargement of the (heart|cardiac silhouette)",
        r"cardiac enlargement",
        r"enlarged cardiomediastin\w*",
        r"cardiomediastin\w* (silhouette |contours? )?(is |are |appears |remains )?(\w+ly )?(enlarged|enlargement)",
        r"enlargement of (the )?cardiomediastin\w*",
    ],
    "Lung Lesion": [
        r"nodul\w*",
        r"mass(es)?",
        r"(lung|pulmonary) lesions?",
        r"neoplasm\w*",
        r"tumou?rs?",
        r"carcinoma",
    ],
    "Lung Opacity": [
        r"opaci\w+",
        r"infiltrat\w*",
        r"air-?space (disease|process)",
        r"haz(e|iness|y)",
        r"densit(y|ies)",
        r"interstitial (marking|prominence|disease|thickening)s?",
    ],
    "Edema": [
        r"(?<!soft tissue )edema",
        r"oedema",
        r"(vascular|pulmonary|venous) congestion",
        r"vascular (prominence|engorgement|indistinctness|margination)",
        r"(vessels|vasculature|vascularity) (are |is )?(\w+ly )?(engorged|congested|indistinct|accentuated)",
        r"xxxx (are |is )?engorged",  # "pulmonary XXXX are engorged": the vessels, de-identified
        r"prominen(t|ce of the) (central )?(pulmonary )?vasculature",
        r"venous hypertension",
        r"(congestive )?heart failure",
        r"chf",
    ],
    "Consolidation": [r"consolidat\w*"],
    # A prior granulomatous infection is a healed scar, not a pneumonia.
    "Pneumonia": [r"pneumoni\w*", r"(?<!granulomatous )infecti\w+", r"bronchopneumoni\w*"],
    "Atelectasis": [r"atelecta\w*", r"collapse"],
    "Pneumothorax": [r"pneumothora\w*"],
    "Pleural Effusion": [
        r"(?<!pericardial )effusions?",
        r"pleural fluid",
        r"hydrothorax",
        r"blunting of the (left |right )?(costophrenic|cp) angles?",
        r"(costophrenic|cp) angle blunting",
    ],
    "Pleural Other": [
        r"pleural (thickening|plaques?|scarring|fibrosis)",
        r"fibrothorax",
        r"pleural-parenchymal scarring",
        r"(apical )?(pleural )?capping",
    ],
    "Fracture": [r"fractur\w*", r"fx"],
    "Support Devices": [
        r"picc( line)?",
        r"central (venous )?(line|catheter)",
        r"catheters?",
        r"(endotracheal|et|ng|og|nasogastric|orogastric|feeding|chest|tracheostomy) tubes?",
        r"tracheostomy",
        r"pace(maker|r)s?",
        r"defibrillator",
        r"aicd",
        r"port-?a-?cath",
        r"stents?",
        r"sternotomy wires?",
        r"sternal wires?",
        r"(surgical )?clips",
        r"hardware",
        r"valve replacement",
        r"(prosthetic|replaced|artificial) (\w+ )?valve",
        r"(pacing |cardiac |monitor |ecg |ekg |pacemaker |icd |defibrillator )leads?",
        r"leads (terminat\w+|project\w*|overl\w+|in (the )?(expected|stable|unchanged|satisfactory|good))",
        r"icd",
        r"(generator|stimulator|pump)",
        r"(vp |ventriculoperitoneal )?shunt( tubing| catheter)?",
        r"(ivc )?filter",
        r"(closure|cardiac|electronic) device",
        # The device word is often de-identified to XXXX: "left chest XXXX with tip in the SVC".
        r"(distal )?tips? (is |are |remains )?(now )?"
        r"(in|at|over|overl\w+|project\w*|terminat\w*|near|within|positioned)",
    ],
}

# Explicit statements of normality that label an observation absent.
NORMALS: dict[str, list[str]] = {
    "Cardiomegaly": [
        r"(normal|upper normal) (heart|cardiac) size",
        # "Heart size is stable" says nothing about its size: not a normal.
        r"(heart|cardiac) (size|silhouette)( is| are)? (normal|within normal limits|upper limits of normal"
        r"|unremarkable|not enlarged)",
        r"heart (is )?(normal in size|not enlarged|of normal size)",
        r"normal (size of the )?(heart|cardiac silhouette)",
        r"normal-sized heart",
    ],
    "Enlarged Cardiomediastinum": [
        r"(normal|unremarkable) (cardio)?mediastinal (silhouette|contours?)",
        r"(cardio)?mediastinal (silhouette|contours?)( is| are)? (normal|within normal limits|unremarkable"
        r"|not (enlarged|widened))",
        r"mediastinum (is )?(normal|unremarkable|not widened)",
    ],
}

PSEUDO = [
    r"no (significant |appreciable |substantial )?(interval )?change",
    r"without (significant |interval )?change",
    r"unchanged",
    r"not (significantly )?changed",
]

NEG_PRE = [
    r"no evidence of",
    r"no signs? of",
    r"negative for",
    r"free of",
    r"clear of",
    r"absence of",
    r"resolution of",
    r"clearing of",
    r"resolved",
    r"removal of",
    r"no longer",
    r"without",
    r"no",
    r"not",
]
UNC_PRE = [
    r"cannot be excluded",
    r"can ?not exclude",
    r"cannot rule out",
    r"(difficult|hard) to (completely |entirely )?exclude",
    r"correlat(e|ion) (clinically )?(for|as to)",
    r"clinical correlation for",
    r"alternatively",
    r"possib(le|ly)",
    r"probabl[ey]",
    r"likely",
    r"may",
    r"might",
    r"could",
    r"questionabl[ey]",
    r"question of",
    r"question",
    r"suggestive of",
    r"suggest(s|ing|ed)?",
    r"concern(ing)? for",
    r"suspicious for",
    r"suspect(ed)?",
    r"worrisome for",
    r"versus",
    r"vs",
    r"differential",
    r"consider(ed)?",
    r"equivocal",
    r"indeterminate",
]
NEG_POST = [
    r"(has|have) (since |now |completely )?(resolved|cleared)",
    r"resolved",
    r"(is|are|has been|have been) removed",
    r"(is|are) (now )?absent",
    r"(appears?|is|are) (within (the )?(limits of normal|normal limits)|normal)",
    r"(is|are)? ?not (seen|identified|present|visualized|appreciated|evident|demonstrated)",
]
UNC_POST = [
    r"(cannot|can not|could not) be (entirely |completely )?(excluded|ruled out)",
    r"(is )?in the differential",
    r"(is )?another consideration",
    r"(is|are)? ?not (entirely |completely )?(excluded|ruled out)",
    r"(is|are) (possible|suspected|likely|questioned|not excluded)",
    r"versus",
    r"vs",
]
TERMINATORS = (
    r"\b(but|however|although|though|which|except|aside from|apart from|whereas|otherwise)\b"
    r"|, there (is|are)\b"
    # "No pneumothorax and small left effusion": an "and" that opens a described finding ends
    # the negation ("no effusion or pneumothorax" still negates both).
    r"|\band (?=(a |an |the )?(small|large|mild|moderate|severe|minimal|trace|tiny|left|right|bilateral|new"
    r"|persistent|stable|increas\w+|decreas\w+|worsen\w+|improv\w+|unchanged|residual|chronic|acute|bibasilar"
    r"|basilar|patchy|streaky|focal|diffuse)\b)"
)


def _alternation(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


_MENTION_RE = {obs: _alternation(p) for obs, p in MENTIONS.items()}
_NORMAL_RE = {obs: _alternation(p) for obs, p in NORMALS.items()}
_PSEUDO_RE = _alternation(PSEUDO)
_NEG_PRE_RE = _alternation(NEG_PRE)
_UNC_PRE_RE = _alternation(UNC_PRE)
_NEG_POST_RE = _alternation(NEG_POST)
_UNC_POST_RE = _alternation(UNC_POST)
_TERM_RE = re.compile(TERMINATORS)
# A text with no mention counts as "No Finding" only if it says something normal.
_NORMAL_HINT_RE = re.compile(
    r"\b(normal|no acute|unremarkable|clear|negative|no active|no evidence|no (significant |focal )?abnormalit\w*"
    r"|no (radiographic |acute )?(disease|findings?|process))\b"
)
# Sentence ends: . ; ! ? (not inside a decimal such as 2.5) and newlines.
_SENT_RE = re.compile(r"(?<!\d)[.;!?](?!\d)|\n")


def rules_digest() -> str:
    """A short hash of every rule table above: the instrument's identity.

    The agreement figures in BENCHMARKS.md were measured with the rules of this digest, which is
    recorded beside them; a test compares the two, so a rule change cannot land without a new
    measurement (and, from now on, rules are refined on train and validation only).
    """
    tables = {
        "mentions": MENTIONS, "normals": NORMALS, "pseudo": PSEUDO, "neg_pre": NEG_PRE, "unc_pre": UNC_PRE,
        "neg_post": NEG_POST, "unc_post": UNC_POST, "terminators": TERMINATORS,
        "normal_hint": _NORMAL_HINT_RE.pattern, "sentence": _SENT_RE.pattern,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16]


def _blank(text: str, match: re.Match[str]) -> str:
    # Keep offsets stable: replace the matched span with spaces.
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def _clauses(text: str) -> list[str]:
    out: list[str] = []
    for sentence in _SENT_RE.split(text.lower()):
        out.extend(part for part in _TERM_RE.split(sentence) if part and part.strip())
    return out


def _mention_label(clause: str, start: int, end: int) -> str:
    after = clause[end:]
    # A following cue counts only up to the next comma (no comma between mention and cue).
    after_near = after.split(",", 1)[0]
    if _UNC_POST_RE.search(after_near):
        return UNCERTAIN
    cues = [(m.end(), ABSENT) for m in _NEG_PRE_RE.finditer(clause[:start])]
    cues += [(m.end(), UNCERTAIN) for m in _UNC_PRE_RE.finditer(clause[:start])]
    if cues:
        return max(cues)[1]  # nearest preceding cue wins
    if _NEG_POST_RE.search(after_near):
        return ABSENT
    return PRESENT


@dataclass(frozen=True)
class Mention:
    """One phrase that names an observation, with its label and where it stands.

    ``clause`` is the lower-cased clause as written (before normals and pseudo-cues are blanked;
    offsets are the same), so callers can read qualifiers and sides around ``start:end``.
    """

    observation: str
    label: str
    clause: str
    start: int
    end: int


def compile_mentions(patterns: dict[str, list[str]]) -> dict[str, re.Pattern[str]]:
    """Compile mention phrases (regex fragments per observation) the way the labeller does."""
    return {obs: _alternation(p) for obs, p in patterns.items()}


def find_mentions(text: str, extra: dict[str, re.Pattern[str]] | None = None) -> list[Mention]:
    """Every mention of an observation in ``text`` (normal statements included, as absent).

    ``extra`` adds observations of the caller's own (compiled by :func:`compile_mentions`); they
    go through the same clauses, normals, pseudo-cues and negation/uncertainty cues.
    """
    patterns = {**_MENTION_RE, **(extra or {})}
    found: list[Mention] = []
    for raw in _clauses(text or ""):
        clause = raw
        for obs, pattern in _NORMAL_RE.items():
            for m in list(pattern.finditer(clause)):
                found.append(Mention(obs, ABSENT, raw, m.start(), m.end()))
                clause = _blank(clause, m)
        for m in list(_PSEUDO_RE.finditer(clause)):
            clause = _blank(clause, m)
        for obs, pattern in patterns.items():
            for m in pattern.finditer(clause):
                found.append(Mention(obs, _mention_label(clause, m.start(), m.end()), raw, m.start(), m.end()))
    return found


def aggregate(mentions: Sequence[Mention], observations: Sequence[str]) -> dict[str, str]:
    """One label per observation: present > uncertain > absent > not mentioned."""
    labels = dict.fromkeys(observations, NOT_MENTIONED)
    for m in mentions:
        if m.observation in labels and _RANK[m.label] > _RANK[labels[m.observation]]:
            labels[m.observation] = m.label
    return labels


def label_report(text: str) -> dict[str, str]:
    """Label one impression: each CheXpert observation → present/absent/uncertain/not mentioned."""
    if not (text or "").strip():
        return dict.fromkeys(OBSERVATIONS, NOT_MENTIONED)  # an empty impression states nothing
    labels = aggregate(find_mentions(text), OBSERVATIONS)
    pathologies = [o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices")]
    abnormal = any(labels[o] in (PRESENT, UNCERTAIN) for o in pathologies)
    if abnormal:
        labels["No Finding"] = ABSENT
    elif any(v != NOT_MENTIONED for v in labels.values()) or _NORMAL_HINT_RE.search(text.lower()):
        labels["No Finding"] = PRESENT
    # else: text that states nothing we can read (garbage, another language) mentions nothing.
    return labels


def present_matrix(texts: Sequence[str]) -> np.ndarray:
    """Boolean matrix (cases × observations): observation labelled *present*."""
    # Label each distinct text once (generated impressions repeat a lot; labelling is pure).
    present: dict[str, list[bool]] = {}
    for t in texts:
        if t not in present:
            labels = label_report(t)
            present[t] = [labels[o] == PRESENT for o in OBSERVATIONS]
    rows = [present[t] for t in texts]
    return np.asarray(rows, dtype=bool).reshape(len(texts), len(OBSERVATIONS))
