"""The clinical faithfulness benchmark's cases: findings that state one acute finding, normal findings,
negated findings and sided findings, in several writers' styles (issue #20).

ROUGE rewards copying the commonest impression; these cases ask whether an impression *names* the acute
finding its findings state, invents none, keeps the side and keeps a negation. No case comes from the test
split. Two disjoint editions keep the benchmark apart from what is tuned on it:

- ``dev``: writers A-C, half of the phrasings, and positive sentences from the **train** split: tune on it;
- ``heldout``: writers D-F, the other phrasings, and positive sentences from the **validation** split:
  report this one.

Issue #30: ``heldout`` was seen while rules were written, so it now counts as part of dev. The held-out edition
is ``heldout-v2`` (new writers G-L, hand-written, frozen with a pinned digest), read by
:func:`radllama.evaluate.editions.load_edition`; this module is unchanged.

Each case: ``{"id", "findings", "kind", "finding", "side", "negated", "writer", "origin"}`` where ``kind`` is
``critical`` (one acute finding stated), ``normal`` (nothing abnormal), ``negation`` (normal findings that
negate ``negated`` explicitly); ``finding`` is one of :data:`FINDING_TYPES` (``None`` for normal/negation);
``side`` is ``left``/``right`` where the finding is lateralised.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

from radllama.data.records import split_sentences

# Finding type -> how writers state it. "{side}"/"{opp}" are filled with left/right, "{size}" with a size word.
# A phrase without "{side}" is not lateralised.
PHRASES: dict[str, list[str]] = {
    "pneumothorax": [
        "{size} {side} pneumothorax",
        "{size} {side}-sided pneumothorax with mediastinal shift to the {opp}",
        "{side} apical pneumothorax measuring 2 cm",
        "tension pneumothorax on the {side} with depression of the {side} hemidiaphragm",
        "there is a {size} pneumothorax on the {side}",
        "pneumothorax at the {side} lung apex",
    ],
    "pleural effusion": [
        "{size} {side} pleural effusion",
        "{size} {side} pleural effusion with adjacent compressive atelectasis",
        "layering {side} pleural effusion",
        "{side} pleural effusion, {size} in size",
        "there is a {size} effusion in the {side} hemithorax",
        "fluid in the {side} pleural space consistent with a {size} effusion",
    ],
    "consolidation": [
        "dense consolidation in the {side} lower lobe",
        "{side} upper lobe consolidation with air bronchograms",
        "focal airspace consolidation at the {side} base",
        "lobar consolidation of the {side} middle and lower zones",
        "consolidation in the {side} lower lobe concerning for pneumonia",
        "patchy consolidation throughout the {side} lung",
    ],
    "pulmonary edema": [
        "diffuse bilateral interstitial and alveolar pulmonary edema",
        "pulmonary vascular congestion with interstitial edema",
        "bilateral perihilar airspace opacities consistent with pulmonary edema",
        "Kerley B lines and cephalization, compatible with pulmonary edema",
        "moderate to severe pulmonary edema",
        "interstitial edema with bilateral septal thickening",
    ],
    "cardiomegaly": [
        "the heart is markedly enlarged",
        "moderate cardiomegaly",
        "the cardiac silhouette is enlarged",
        "enlarged heart",
        "cardiomegaly with a cardiothoracic ratio of 0.65",
        "the heart is enlarged, increased since the prior study",
    ],
    "lung mass": [
        "4 cm mass in the {side} upper lobe",
        "spiculated {side} hilar mass",
        "large mass at the {side} lung apex",
        "a 3.5 cm rounded mass in the {side} lower lobe",
        "lobulated mass projecting over the {side} mid lung",
        "a large {side} perihilar mass",
    ],
    "fracture": [
        "acute fracture of the {side} 6th rib",
        "displaced fracture of the {side} clavicle",
        "fractures of the {side} 5th through 7th ribs",
        "acute displaced {side} rib fractures",
        "comminuted fracture of the {side} humeral neck",
        "nondisplaced fracture of the {side} 9th rib",
    ],
    "free air": [
        "free air under the {side} hemidiaphragm",
        "pneumoperitoneum with free air beneath both hemidiaphragms",
        "free intraperitoneal air beneath the diaphragm",
        "large amount of free air under the diaphragm",
        "crescent of free air below the {side} hemidiaphragm",
        "pneumoperitoneum",
    ],
    "collapse": [
        "complete collapse of the {side} lower lobe",
        "{side} upper lobe collapse",
        "collapse of the {side} lung with shift of the mediastinum to the {side}",
        "{side} lower lobe atelectasis with volume loss",
        "lobar collapse of the {side} upper lobe",
        "there is collapse of the {side} lower lobe",
    ],
    "malpositioned tube": [
        "endotracheal tube tip in the right mainstem bronchus",
        "the endotracheal tube is malpositioned, with its tip in the right main bronchus",
        "nasogastric tube coiled in the esophagus",
        "feeding tube tip in the right lower lobe bronchus",
        "the enteric tube is malpositioned and terminates in the left main bronchus",
        "endotracheal tube tip is in the left mainstem bronchus",
    ],
    "widened mediastinum": [
        "the mediastinum is widened",
        "widening of the superior mediastinum",
        "mediastinal widening",
        "the mediastinum is markedly widened, measuring 9 cm",
        "widened mediastinal contour",
        "the superior mediastinum is widened compared with the prior",
    ],
}
FINDING_TYPES: tuple[str, ...] = tuple(PHRASES)
SIZES = ("small", "moderate", "large")

# Normal sentences per writer, each tagged with the finding types it speaks of (a case never gets a normal
# sentence that negates its own finding). Writers A-C: dev edition; D-F: held-out edition.
_NORMAL = "normal"
WRITERS: dict[str, dict] = {
    "A": {  # terse
        "normals": [
            ("Heart normal.", {"cardiomegaly"}),
            ("Mediastinum normal.", {"widened mediastinum"}),
            ("No pneumothorax.", {"pneumothorax"}),
            ("No effusion.", {"pleural effusion"}),
            ("Lungs clear.", {"consolidation", "collapse", "pulmonary edema", "lung mass"}),
            ("Bones intact.", {"fracture"}),
        ],
        "frame": "{s}.",
    },
    "B": {  # full sentences
        "normals": [
            ("The heart size is normal.", {"cardiomegaly"}),
            ("The mediastinal contours are within normal limits.", {"widened mediastinum"}),
            ("There is no pneumothorax.", {"pneumothorax"}),
            ("There is no pleural effusion.", {"pleural effusion"}),
            ("The lungs are otherwise clear.", set()),
            ("No free air is seen under the diaphragm.", {"free air"}),
            ("The osseous structures are intact.", {"fracture"}),
        ],
        "frame": "There is {s}.",
    },
    "C": {  # structured headings
        "normals": [
            ("HEART: Normal size.", {"cardiomegaly"}),
            ("MEDIASTINUM: Not widened.", {"widened mediastinum"}),
            ("PLEURA: No effusion or pneumothorax.", {"pleural effusion", "pneumothorax"}),
            ("LUNGS: No focal consolidation.", {"consolidation"}),
            ("BONES: No acute fracture.", {"fracture"}),
            ("ABDOMEN: No free air.", {"free air"}),
        ],
        "frame": "FINDING: {s}.",
    },
    "D": {  # hedged, long
        "normals": [
            ("Frontal and lateral views of the chest were obtained.", set()),
            ("The cardiomediastinal silhouette is unremarkable.", {"cardiomegaly", "widened mediastinum"}),
            ("No pneumothorax is identified.", {"pneumothorax"}),
            ("The costophrenic angles are sharp and there is no pleural effusion.", {"pleural effusion"}),
            ("The remainder of the lungs is well aerated without focal airspace disease.", set()),
            ("Visualized upper abdomen is unremarkable.", set()),
        ],
        "frame": "Findings are notable for {s}.",
    },
    "E": {  # comparison style
        "normals": [
            ("Lungs are clear.", {"consolidation", "collapse", "pulmonary edema", "lung mass"}),
            ("Heart size is stable and normal.", {"cardiomegaly"}),
            ("Mediastinal contours unchanged.", {"widened mediastinum"}),
            ("No new effusion.", {"pleural effusion"}),
            ("No pneumothorax.", {"pneumothorax"}),
            ("Lines and tubes in standard position.", {"malpositioned tube"}),
        ],
        "frame": "New {s}.",
    },
    "F": {  # OpenI-like
        "normals": [
            ("The heart is normal in size.", {"cardiomegaly"}),
            ("The mediastinum is unremarkable.", {"widened mediastinum"}),
            ("The lungs are otherwise clear.", set()),
            ("There is no pneumothorax.", {"pneumothorax"}),
            ("No pleural effusion.", {"pleural effusion"}),
            ("Osseous structures are within normal limits for age.", {"fracture"}),
        ],
        "frame": "There is {s}.",
    },
}
EDITIONS: dict[str, tuple[str, ...]] = {"dev": ("A", "B", "C"), "heldout": ("D", "E", "F")}
EDITION_ORDER = ("dev", "heldout")
SOURCE_SPLIT = {"dev": "train", "heldout": "validation"}
# Explicit negations for "negation" cases: the impression must not turn them positive.
NEGATIONS: dict[str, list[str]] = {
    "pneumothorax": ["No pneumothorax.", "There is no evidence of pneumothorax."],
    "pleural effusion": ["No pleural effusion.", "There is no pleural effusion on either side."],
    "consolidation": ["No focal consolidation.", "There is no consolidation."],
    "pulmonary edema": ["No pulmonary edema.", "There is no edema."],
    "cardiomegaly": ["No cardiomegaly.", "The heart is not enlarged."],
    "lung mass": ["No mass or nodule.", "There is no lung mass."],
    "fracture": ["No acute fracture.", "No displaced rib fracture is seen."],
}


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _fill(phrase: str, side: str | None, size: str) -> str:
    opp = {"left": "right", "right": "left"}.get(side or "", "")
    return phrase.format(side=side or "", opp=opp, size=size).replace("  ", " ").strip()


def _phrasings(finding: str, edition: str) -> list[str]:
    """Each edition states findings in its own phrasings: dev the even ones, heldout the odd ones."""
    return PHRASES[finding][EDITION_ORDER.index(edition) :: len(EDITION_ORDER)]


def _context(writer: str, finding: str | None, rng: random.Random, keep: int) -> list[str]:
    """Up to ``keep`` of the writer's normal sentences that say nothing about ``finding``."""
    pool = [s for s, about in WRITERS[writer]["normals"] if finding is None or finding not in about]
    return rng.sample(pool, min(keep, len(pool)))


def templated_cases(edition: str, seed: int = 0) -> list[dict]:
    """Every finding type in every phrasing, by the edition's writers, with and without normal context."""
    rng = random.Random(f"{edition}-{seed}")
    cases: list[dict] = []
    writers = EDITIONS[edition]
    for finding in PHRASES:
        for p_index, phrase in enumerate(_phrasings(finding, edition)):
            for w_index, writer in enumerate(writers):  # every phrasing by every writer, twice
                for variant in range(2):
                    n = (p_index * len(writers) + w_index) * 2 + variant
                    side = ("left", "right")[(n + p_index) % 2] if "{side}" in phrase else None
                    stated = _fill(phrase, side, SIZES[n % len(SIZES)])
                    # The finding alone (one case in three), or among 2-4 normal sentences, before or after it;
                    # a clause ("the heart is enlarged") takes no frame.
                    context = [] if n % 3 == 0 else _context(writer, finding, rng, rng.randint(2, 4))
                    clause = re.search(r"\b(is|are|has|have)\b", stated) is not None
                    first = stated if clause or variant else WRITERS[writer]["frame"].format(s=stated)
                    parts = [_sentence(first), *context] if rng.random() < 0.5 else [*context, _sentence(first)]
                    text = " ".join(parts)
                    cases.append(_case(edition, len(cases), text, "critical", finding, side, writer, "template"))
    for writer in writers:
        for n in range(6):  # normal findings in each writer's style, of varied length
            text = " ".join(_context(writer, None, rng, 2 + n % 4))
            cases.append(_case(edition, len(cases), text, "normal", None, None, writer, "template"))
    for finding, negs in NEGATIONS.items():
        for n, neg in enumerate(negs):
            writer = writers[n % len(writers)]
            context = _context(writer, finding, rng, 3)
            text = " ".join([*context[:1], neg, *context[1:]])
            cases.append(_case(edition, len(cases), text, "negation", None, None, writer, "template", finding))
    return cases


# The kinds the frozen heldout-v2 reports and the generated dev edition lacked (issue #30), written for dev
# with its writers (A-C) and its phrasings, so that a recipe or decoder can be chosen on them: hedged findings
# (the impression keeps the hedge), resolved ones (it must not assert them) and two or three findings in one
# text (each must be named). In the frozen editions' form ("expect"), scored by radllama.evaluate.edition_score.
HEDGES = ("possible {s}", "{s} cannot be excluded", "findings may represent {s}", "questionable {s}")
RESOLVED = ("previously seen {s} has resolved", "the {s} seen on the prior study is no longer visible")
HEDGEABLE = (
    "pneumothorax", "pleural effusion", "consolidation", "pulmonary edema", "lung mass", "fracture", "collapse",
    "free air",
)  # fmt: skip
RESOLVABLE = ("pneumothorax", "pleural effusion", "consolidation", "pulmonary edema", "collapse")


def _noun_phrases(finding: str, edition: str) -> list[str]:
    """The edition's phrasings of ``finding`` that read as a noun phrase ("small left pneumothorax")."""
    clause = re.compile(r"\b(is|are|has|have)\b")
    return [p for p in _phrasings(finding, edition) if not p.startswith("there ") and not clause.search(p)]


def kind_cases(edition: str = "dev", seed: int = 0) -> list[dict]:
    """Hedged, resolved and multi-finding cases by the edition's writers, in the frozen editions' form:
    ``{"id", "edition", "kind", "writer", "findings", "origin", "expect": [{"finding", "status", "side"}]}``."""
    rng = random.Random(f"{edition}-kinds-{seed}")
    writers = EDITIONS[edition]
    cases: list[dict] = []

    def add(kind: str, writer: str, stated: list[str], about: set[str], expect: list[dict]) -> None:
        context = [s for s, on in WRITERS[writer]["normals"] if not on & about]
        context = rng.sample(context, min(rng.randint(1, 3), len(context)))
        parts = [*context[:1], *stated, *context[1:]]
        cases.append({"id": f"{edition}-kinds-{len(cases):04d}", "edition": f"{edition}-kinds", "kind": kind,
                      "writer": writer, "findings": " ".join(parts), "origin": "template",
                      "expect": expect})  # fmt: skip

    n = 0

    def one(kind: str, status: str, finding: str, phrase: str, template: str) -> None:
        """A one-finding case: ``phrase`` filled (side and size by the running count) inside ``template``."""
        nonlocal n
        side = ("left", "right")[n % 2] if "{side}" in phrase else None
        stated = _sentence(template.format(s=_fill(phrase, side, SIZES[n % len(SIZES)])))
        expect = [{"finding": finding, "status": status, "side": side}]
        add(kind, writers[n % len(writers)], [stated], {finding}, expect)
        n += 1

    for finding in HEDGEABLE:
        for phrase in _noun_phrases(finding, edition):
            for hedge in HEDGES[n % 2 :: 2]:  # two of the four hedges per phrasing, alternating
                one("hedged", "uncertain", finding, phrase, hedge)
    for finding in RESOLVABLE:
        # A long phrase ("collapse of the left lung with shift of ...") puts "has resolved" far from what it
        # says is gone: no radiologist writes it so, and no reader can be asked to follow it.
        for phrase in [p for p in _noun_phrases(finding, edition) if not re.search(r" (with|concerning) ", p)]:
            for template in RESOLVED:
                one("resolved", "absent", finding, phrase, template)
    types = list(PHRASES)
    for count, many in ((2, 40), (3, 20)):  # forty texts with two findings, twenty with three
        for _ in range(many):
            picked = rng.sample(types, count)
            stated, expect = [], []
            for finding in picked:
                phrase = rng.choice(_phrasings(finding, edition))
                side = rng.choice(("left", "right")) if "{side}" in phrase else None
                stated.append(_sentence(_fill(phrase, side, rng.choice(SIZES))))
                expect.append({"finding": finding, "status": "present", "side": side})
            add("multi", writers[n % len(writers)], stated, set(picked), expect)
            n += 1
    return cases


def _case(
    edition: str, n: int, findings: str, kind: str, finding: str | None, side: str | None, writer: str,
    origin: str, negated: str | None = None,
) -> dict:  # fmt: skip
    return {
        "id": f"{edition}-{n:04d}",
        "findings": findings,
        "kind": kind,
        "finding": finding,
        "side": side,
        "negated": negated,
        "writer": writer,
        "origin": origin,
    }


def sourced_cases(
    edition: str, records: Iterable[dict], finding_of: Callable[[str], str | None], per_type: int = 4, seed: int = 0
) -> list[dict]:
    """Positive sentences from real reports of the edition's split, set among the edition's normal sentences.

    ``finding_of(sentence)`` names the one finding type a sentence states (``None`` when it states none,
    several, or hedges): the caller passes the labeller-based rule, so this module stays free of it.
    """
    rng = random.Random(f"{edition}-sourced-{seed}")
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    for rec in records:
        for sentence in split_sentences(rec.get("findings", "")):
            key = sentence.lower()
            if key in seen or "xxxx" in key:  # de-identified words make a sentence unreadable
                continue
            seen.add(key)
            finding = finding_of(sentence)
            if finding is not None:
                found.setdefault(finding, []).append(sentence)
    cases: list[dict] = []
    writers = EDITIONS[edition]
    for finding in FINDING_TYPES:
        pool = found.get(finding, [])
        for sentence in rng.sample(pool, min(per_type, len(pool))):
            writer = rng.choice(writers)
            context = _context(writer, finding, rng, rng.randint(1, 3))
            text = " ".join([*context[:1], _sentence(sentence), *context[1:]])
            side = _side_word(sentence)
            cases.append(_case(edition, 0, text, "critical", finding, side, writer, SOURCE_SPLIT[edition]))
    for n, case in enumerate(cases):
        case["id"] = f"{edition}-src-{n:04d}"
    return cases


def _side_word(sentence: str) -> str | None:
    words = set(re.findall(r"\b(left|right|bilateral|both)\b", sentence.lower()))
    if words in ({"left"}, {"right"}):
        return words.pop()
    return None
