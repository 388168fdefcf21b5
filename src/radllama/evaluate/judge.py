"""An independent clinical reader of radiology text: the judge no decoder is built on (issue #30).

The faithfulness benchmark used to grade impressions with the same rules that chose them (the labeller and the
consistency check, which the MBR decoder and its extractive candidate also use). This reader is written apart
from :mod:`radllama.labeller` and :mod:`radllama.consistency`, imports neither (tests/test_judge_independence.py)
and is imported by no decoder, server or trainer: it only scores.

How it reads (rules in :mod:`radllama.evaluate.judge_rules`, all in :func:`reader_digest`):

1. spaCy's blank English tokenizer and its rule-based sentencizer (``.``, ``!``, ``?``, ``;``, newlines).
2. spaCy's token ``Matcher`` finds each finding's phrases (:data:`~radllama.evaluate.judge_rules.TARGETS`); the
   longest match wins where two overlap. Explicit normal statements ("heart size is normal") are read as
   negated mentions of what they rule out (:data:`~radllama.evaluate.judge_rules.NORMALS`).
3. Three NegEx passes (negspacy, each with its own cue lists, pseudo-cues and clause ends) mark each mention
   *negated*, *hedged* or *resolved*; each pass ends at the others' cues, so "No pneumothorax, possible
   effusion" leaves the effusion uncertain and "No pneumothorax and small left effusion" leaves it present.
4. Status: resolved → ``historical``; else negated → ``negated``; else hedged → ``uncertain``; else
   ``present``. A cue inside the mention counts too ("heart is not enlarged", "borderline enlarged"), and a
   finding offered in a differential ("atelectasis versus pneumonia") is uncertain.
5. Side: ``left`` / ``right`` / ``bilateral`` from the mention's own words and a window around it inside its
   clause; else from its sentence when the sentence has one finding and one side.

A malpositioned tube is a wrong tip position ("right mainstem bronchus", "coiled in the esophagus") in a
sentence that names a tube, line or catheter.

What it is not: a trained model or a radiologist; a second set of rules, so its agreement with our labeller
(bench/bench_judge_agreement.py, docs/evaluation.md) says how far two independent readings coincide, not
which is right.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from radllama.evaluate import judge_rules as rules

# Bump when the code that applies the rules changes (the tables are hashed as they are).
READER_VERSION = "1"

PRESENT, UNCERTAIN, HISTORICAL, NEGATED = "present", "uncertain", "historical", "negated"
STATUSES: tuple[str, ...] = (PRESENT, UNCERTAIN, HISTORICAL, NEGATED)
# The strongest status of a finding over its mentions.
_RANK = {PRESENT: 3, UNCERTAIN: 2, HISTORICAL: 1, NEGATED: 0}

FINDINGS: tuple[str, ...] = tuple(rules.TARGETS)
# The CheXpert observations (the labeller's names) and their values here.
CHEXPERT_OBSERVATIONS: tuple[str, ...] = ("No Finding", *rules.CHEXPERT)
POSITIVE, NEGATIVE, UNCERTAIN_LABEL, NOT_MENTIONED = "positive", "negative", "uncertain", "not mentioned"

_INTRINSIC_NEGATION = {"not", "no", "without"}
_INTRINSIC_HEDGE = {"borderline", "possibly", "probably", "likely", "questionably", "questionable", "possible"}
_DEVICE = "support device"
_MALPOSITION = "malpositioned tube"
_FINDINGS_KEY, _NORMALS_KEY = "judge_findings", "judge_normals"
_EXT = {"negated": "judge_negated", "hedged": "judge_hedged", "resolved": "judge_resolved"}


class ReaderError(RuntimeError):
    """The reader's libraries are missing or a rule does not compile."""


@dataclass(frozen=True)
class Mention:
    """One finding as the reader read it."""

    finding: str
    status: str  # present / uncertain / historical / negated
    side: str | None  # left / right / bilateral / None
    text: str  # the words matched
    span: tuple[int, int]  # character offsets of the words in the text
    sentence: tuple[int, int]  # character offsets of its sentence
    change: str | None = None  # stable / increased / decreased, where its clause says so
    normal: bool = False  # read from an explicit normal statement ("heart size is normal")


# ----------------------------------------------------------------------------- the token pattern language


def _token(spec: str) -> dict:
    """One token of the rule language (judge_rules' docstring) as a spaCy Matcher token pattern."""
    op = None
    for suffix in ("?", "*", "+"):
        if spec.endswith(suffix) and len(spec) > 1:
            spec, op = spec[:-1], suffix
            break
    if spec.endswith("}") and "{" in spec[1:]:
        spec, op = spec[: spec.index("{", 1)], spec[spec.index("{", 1) :]
    if spec.startswith("/") and spec.endswith("/") and len(spec) > 2:
        token: dict = {"LOWER": {"REGEX": f"^(?:{spec[1:-1]})$"}}
    elif spec.startswith("@"):
        name = spec[1:]
        if name not in rules.WORDS:
            raise ReaderError(f"unknown word set @{name} in a reader rule")
        token = {"LOWER": {"IN": rules.WORDS[name]}}
    else:
        words = spec.split("|")
        token = {"LOWER": words[0]} if len(words) == 1 else {"LOWER": {"IN": words}}
    if op:
        token["OP"] = op
    return token


def compile_pattern(rule: str) -> list[dict]:
    """A rule string as a spaCy Matcher pattern."""
    return [_token(spec) for spec in rule.split()]


def _phrases(items: Iterable[str]) -> list[str]:
    return sorted(set(items))


def _termsets() -> dict[str, dict[str, list[str]]]:
    """The three NegEx passes' cue lists; each pass also ends at the other passes' cues."""
    openers = [f"{j} {o}" for j in rules.ASSERTION_JOINERS for o in rules.ASSERTION_OPENERS]
    openers += [f"and {o}" for o in rules.AND_OPENERS]
    neg, hedge, res = rules.NEGATION, rules.HEDGE, rules.RESOLVED
    common = rules.TERMINATORS + openers
    # "no" ends a hedge, not a resolution: it would cut "pneumothorax(,) | no longer visible" in two. (In
    # "Resolved effusion, no pneumothorax" the pneumothorax reads historical: not present either way.)
    neg_cues_for_resolved = [c for c in neg["preceding"] if not c.startswith("no")]
    return {
        "negated": {
            "pseudo_negations": _phrases(neg["pseudo"]),
            "preceding_negations": _phrases(neg["preceding"]),
            "following_negations": _phrases(neg["following"]),
            "termination": _phrases(common + hedge["preceding"] + hedge["following"] + res["preceding"]),
        },
        "hedged": {
            "pseudo_negations": _phrases(hedge["pseudo"]),
            "preceding_negations": _phrases(hedge["preceding"]),
            "following_negations": _phrases(hedge["following"]),
            "termination": _phrases(common + neg["preceding"] + res["preceding"]),
        },
        "resolved": {
            "pseudo_negations": _phrases(res["pseudo"]),
            "preceding_negations": _phrases(res["preceding"]),
            "following_negations": _phrases(res["following"]),
            # "with": "Cardiomegaly with resolved effusion" resolves the effusion only.
            "termination": _phrases(common + neg_cues_for_resolved + hedge["preceding"] + ["with"]),
        },
    }


def reader_digest() -> str:
    """sha256 over every rule table and the code version: which reader scored a frozen benchmark edition."""
    # Every table of judge_rules (its upper-case names), so a new table cannot be left out.
    tables = {name: value for name, value in vars(rules).items() if name.isupper()}
    tables["intrinsic"] = [sorted(_INTRINSIC_NEGATION), sorted(_INTRINSIC_HEDGE)]
    tables["version"] = READER_VERSION
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- the pipeline


def _blank_english(spacy):
    """spaCy's blank English pipeline, without loading other packages' spaCy plugins.

    A blank ``Language`` imports every package that registers a spaCy factory through an entry point; here that
    is presidio, whose import pulls in transformers' pipelines (about 5 s on 2 cores, and presidio is otherwise
    imported only when something is de-identified). The reader uses no plugin, so the lookup is skipped.
    """
    from spacy.lang.en import English

    plugins = spacy.util.registry._entry_point_factories
    saved, plugins.entry_points = plugins.entry_points, False
    try:
        return English()
    finally:
        plugins.entry_points = saved


@functools.cache
def _pipeline():
    """spaCy blank English + sentencizer + three negspacy passes, and the target matchers; built once."""
    try:
        import negspacy.negation  # noqa: F401  (registers the "negex" factory)
        import spacy
        from spacy.matcher import Matcher
    except ImportError as e:  # pragma: no cover - both are dependencies of radllama
        raise ReaderError(f"the independent reader needs spacy and negspacy: {e}") from e

    nlp = _blank_english(spacy)
    nlp.add_pipe("sentencizer", config={"punct_chars": rules.SENTENCE_ENDS})
    for name, termset in _termsets().items():
        nlp.add_pipe(
            "negex",
            name=f"judge_{name}",
            config={"neg_termset": termset, "extension_name": _EXT[name], "span_keys": [_FINDINGS_KEY]},
        )
    targets, normals = Matcher(nlp.vocab), Matcher(nlp.vocab)
    for finding, patterns in rules.TARGETS.items():
        targets.add(finding, [compile_pattern(p) for p in patterns])
    for group, (patterns, _) in rules.NORMALS.items():
        normals.add(group, [compile_pattern(p) for p in patterns])
    words = {cat: [nlp.make_doc(w) for w in ws] for cat, ws in rules.CHANGE.items()}
    return nlp, targets, normals, words


def _match(doc, matcher) -> list:
    """Non-overlapping matches, longest first (spaCy's filter_spans), as labelled spans."""
    from spacy.tokens import Span
    from spacy.util import filter_spans

    spans = [Span(doc, start, end, label=match_id) for match_id, start, end in matcher(doc)]
    return sorted(filter_spans(spans), key=lambda s: s.start)


def _doc(text: str):
    """The parsed text with its finding spans (negspacy marks live on them) and normal spans."""
    nlp, targets, normals, _ = _pipeline()
    doc = nlp.make_doc(text)
    # Sentences first: the matcher does not need them, negspacy does; spans go in before the passes run.
    doc = nlp.get_pipe("sentencizer")(doc)
    found, normal = _match(doc, targets), _match(doc, normals)
    # A normal statement wins over the finding word inside it ("vascular engorgement ... within limits of
    # normal"); one that only overlaps a finding loses to it.
    found = [f for f in found if not any(n.start <= f.start and f.end <= n.end for n in normal)]
    normal = [n for n in normal if not any(n.start < f.end and f.start < n.end for f in found)]
    doc.spans[_FINDINGS_KEY] = found
    doc.spans[_NORMALS_KEY] = normal
    for name, proc in nlp.pipeline:
        if name != "sentencizer":
            doc = proc(doc)
    return doc


def _clause(doc, span) -> tuple[int, int]:
    """Token bounds of the clause around a span: its sentence, cut at commas and clause-ending words."""
    sent = span.sent
    stops = set(rules.CLAUSE_STOPS)
    start = span.start
    while start > sent.start and doc[start - 1].lower_ not in stops:
        start -= 1
    end = span.end
    while end < sent.end and doc[end].lower_ not in stops:
        end += 1
    return start, end


def _side(doc, span, sentence_fallback: bool) -> str | None:
    """left / right / bilateral from the mention's words and a window around it (see the module docstring)."""
    seen: set[str] = set()
    for tok in span:
        if tok.lower_ in rules.SIDE_WORDS:
            seen.add(rules.SIDE_WORDS[tok.lower_])
    sent = span.sent
    stops = set(rules.SIDE_STOPS)
    i = span.start - 1
    while i >= max(sent.start, span.start - rules.SIDE_WINDOW_BEFORE) and doc[i].lower_ not in stops:
        if doc[i].lower_ in rules.SIDE_WORDS:
            seen.add(rules.SIDE_WORDS[doc[i].lower_])
        i -= 1
    i = span.end
    while i < min(sent.end, span.end + rules.SIDE_WINDOW_AFTER) and doc[i].lower_ not in stops:
        if doc[i].lower_ in rules.SIDE_WORDS:
            seen.add(rules.SIDE_WORDS[doc[i].lower_])
        i += 1
    if not seen and sentence_fallback:
        seen = {rules.SIDE_WORDS[t.lower_] for t in sent if t.lower_ in rules.SIDE_WORDS}
    if not seen:
        return None
    if "bilateral" in seen or seen == {"left", "right"}:
        return "bilateral"
    return seen.pop()


def _change(doc, span, words) -> str | None:
    """stable / increased / decreased where the mention's clause says so (first such word nearest the mention)."""
    start, end = _clause(doc, span)
    best: tuple[int, str] | None = None
    for category, phrases in words.items():
        for phrase in phrases:
            n = len(phrase)
            for i in range(start, end - n + 1):
                if all(doc[i + k].lower_ == phrase[k].lower_ for k in range(n)):
                    distance = abs(i - span.start)
                    if best is None or distance < best[0]:
                        best = (distance, category)
    return best[1] if best else None


def _differential(doc, span) -> bool:
    """A differential word ("versus") next to the mention, with no clause break between."""
    sent, gap = span.sent, rules.ALTERNATIVE_GAP
    breaks = {",", ";", "no", "without", "with", "and", "but"}
    before = [t.lower_ for t in doc[max(sent.start, span.start - gap) : span.start]]
    after = [t.lower_ for t in doc[span.end : min(sent.end, span.end + gap)]]
    for words in (reversed(before), after):
        for w in words:
            if w in rules.ALTERNATIVES:
                return True
            if w in breaks:
                break
    return False


def _status(span, differential: bool) -> str:
    """The mention's status from the three passes' marks, cues inside it, and a differential around it."""
    words = {t.lower_ for t in span}
    if span._.get(_EXT["resolved"]):
        return HISTORICAL
    if span._.get(_EXT["negated"]) or words & _INTRINSIC_NEGATION:
        return NEGATED
    if span._.get(_EXT["hedged"]) or words & _INTRINSIC_HEDGE or differential:
        return UNCERTAIN
    return PRESENT


def read(text: str) -> list[Mention]:
    """Every finding mention in ``text``, in order, with its status, side and sentence."""
    if not (text or "").strip():
        return []
    doc = _doc(text)
    words = _pipeline()[3]
    spans = list(doc.spans[_FINDINGS_KEY])
    devices = {s.sent.start for s in spans if s.label_ == _DEVICE}
    per_sentence: dict[int, int] = {}
    for s in spans:
        per_sentence[s.sent.start] = per_sentence.get(s.sent.start, 0) + 1
    out: list[Mention] = []
    for s in spans:
        if s.label_ == _MALPOSITION and s.sent.start not in devices:
            continue  # a wrong position needs a tube in its sentence ("mass in the right mainstem bronchus")
        out.append(
            Mention(
                finding=s.label_,
                status=_status(s, _differential(doc, s)),
                side=_side(doc, s, sentence_fallback=per_sentence[s.sent.start] == 1),
                text=s.text,
                span=(s.start_char, s.end_char),
                sentence=(s.sent.start_char, s.sent.end_char),
                change=_change(doc, s, words),
            )
        )
    for s in doc.spans[_NORMALS_KEY]:
        for finding in rules.NORMALS[s.label_][1]:
            out.append(
                Mention(
                    finding=finding,
                    status=NEGATED,
                    side=None,
                    text=s.text,
                    span=(s.start_char, s.end_char),
                    sentence=(s.sent.start_char, s.sent.end_char),
                    normal=True,
                )
            )
    return sorted(out, key=lambda m: m.span)


def expand(mentions: Iterable[Mention]) -> list[Mention]:
    """Mentions plus the broader findings each one names (pneumonia names a consolidation; judge_rules.IMPLIES)."""
    out: list[Mention] = []
    for m in mentions:
        out.append(m)
        for broader in rules.IMPLIES.get(m.finding, ()):
            out.append(Mention(broader, m.status, m.side, m.text, m.span, m.sentence, m.change, m.normal))
    return out


def _strongest(mentions: Iterable[Mention]) -> dict[str, str]:
    best: dict[str, str] = {}
    for m in mentions:
        if m.finding not in best or _RANK[m.status] > _RANK[best[m.finding]]:
            best[m.finding] = m.status
    return best


def findings(text: str, statuses: Sequence[str] = (PRESENT,)) -> set[str]:
    """The findings (with the broader ones they name) whose strongest status is one of ``statuses``."""
    bad = set(statuses) - set(STATUSES)
    if bad:
        raise ValueError(f"unknown status {sorted(bad)}: choose from {STATUSES}")
    return {f for f, s in _strongest(expand(read(text))).items() if s in statuses}


def status_of(text: str, finding: str) -> str | None:
    """The finding's strongest status in ``text`` (present > uncertain > historical > negated), None if unmentioned."""
    return _strongest(m for m in expand(read(text)) if m.finding == finding).get(finding)


def side_of(text: str, finding: str) -> str | None:
    """The side of the finding's strongest mentions: left / right / bilateral, None where none is said."""
    ms = [m for m in expand(read(text)) if m.finding == finding]
    status = _strongest(ms).get(finding)
    sides = {m.side for m in ms if m.status == status and m.side}
    if not sides:
        return None
    return "bilateral" if "bilateral" in sides or sides == {"left", "right"} else sides.pop()


def labels_chexpert(text: str) -> dict[str, str]:
    """Each CheXpert observation (the labeller's names) -> positive / negative / uncertain / not mentioned.

    CheXpert's own conventions: historical (resolved) reads negative; No Finding is positive when the text says
    something and no observation but Support Devices is positive or uncertain. The benchmark's broader names
    (:func:`expand`: pneumonia names a consolidation) are not used: CheXpert keeps those observations apart.
    """
    best = _strongest(read(text))
    value = {PRESENT: POSITIVE, UNCERTAIN: UNCERTAIN_LABEL, HISTORICAL: NEGATIVE, NEGATED: NEGATIVE}
    labels = dict.fromkeys(CHEXPERT_OBSERVATIONS, NOT_MENTIONED)
    for obs, names in rules.CHEXPERT.items():
        stated = [best[n] for n in names if n in best]
        if stated:
            labels[obs] = value[max(stated, key=_RANK.__getitem__)]
    pathologies = [o for o in rules.CHEXPERT if o != "Support Devices"]
    if any(labels[o] in (POSITIVE, UNCERTAIN_LABEL) for o in pathologies):
        labels["No Finding"] = NEGATIVE
    elif any(c.isalpha() for c in text or ""):
        labels["No Finding"] = POSITIVE
    return labels
