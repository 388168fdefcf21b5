"""De-identification of report text: find protected health information (PHI), replace it with typed placeholders.

Built on ``presidio-analyzer``: its engine, its phone-number, date, e-mail and US SSN recognisers, and our
own recognisers (written on its ``LocalRecognizer`` interface) for the forms radiology reports use —
"Dr. X", "discussed with X", signatures, accession numbers and MRNs, pagers, ages over 89, times.
No spaCy model is loaded (none can be fetched offline): presidio's no-op NLP engine runs the
pattern recognisers alone, and every recogniser here carries its own context in its pattern. The spans
found are replaced by ``presidio-anonymizer``'s engine (its "replace" operator, one placeholder per type).

Already-redacted markers (OpenI's ``XXXX``, MIMIC-CXR's ``___``) are never treated as names and are
left as they are. Shared by data (``--deidentify``), generate and serve (the output guard) and the
memorization audit, so it sits below all of them.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import regex as re

from radllama.errors import RadLlamaError

# The placeholder each PHI type becomes; the keys are the types counted in manifests and /metrics.
PLACEHOLDERS = {
    "NAME": "[NAME]",
    "DATE": "[DATE]",
    "TIME": "[TIME]",
    "ID": "[ID]",
    "PHONE": "[PHONE]",
    "EMAIL": "[EMAIL]",
    "ADDRESS": "[ADDRESS]",
    "AGE": "[AGE>89]",
}
# presidio's own entity names, mapped onto ours.
_PRESIDIO_TYPES = {"DATE_TIME": "DATE", "PHONE_NUMBER": "PHONE", "EMAIL_ADDRESS": "EMAIL", "US_SSN": "ID"}
# presidio's date patterns below this score are bare "m/yy" and "m/yyyy" forms, which also read as
# fractions and ratios; our own month/year pattern takes the plausible ones (years 19xx/20xx).
_MIN_SCORE = 0.3
_PLACEHOLDER_RE = re.compile(r"\[(?:NAME|DATE|TIME|ID|PHONE|EMAIL|ADDRESS|AGE>89)\]")

# --- names ----------------------------------------------------------------------------------------
# A name word: capitalised (or all capitals), with O'Brien / O'DONNELL / Smith-Jones / McDonald forms.
_WORD = (
    r"(?:\p{Lu}\p{Ll}*\p{Lu}?\p{Ll}+(?:['\-]\p{Lu}\p{Ll}+)?|\p{Lu}'\p{Lu}\p{Ll}+|\p{Lu}'\p{Lu}{2,}|"
    r"\p{Lu}{2,}(?:['\-]\p{Lu}{2,})?)"
)
# Particles inside a name, in any case: "de la Torre", "María del Carmen", "Van der Berg", "DE LA TORRE".
_PARTICLE = r"(?:(?i:de|del|de\s+la|de\s+las|de\s+los|da|das|do|dos|di|du|van|van\s+der|von|le|la|st\.)\s+)"
# A surname: a name word, or after a particle also one capital ("de la O"); alone, one is an initial.
_SURNAME = rf"(?:{_PARTICLE}?{_WORD}|{_PARTICLE}\p{{Lu}}(?![\w'\-]))"
_NAME = rf"{_SURNAME}(?:\s+(?:\p{{Lu}}\.?(?=\s)|{_SURNAME})){{0,3}}"
# "CR/DR" is a modality pair, not a title.
_TITLE = r"(?<![/\-])(?:Dr|DR|Drs|Doctor|DOCTOR|Mr|MR|Mrs|MRS|Ms|MS|Miss|Prof)\.?"
# Capitalised words after a cue that are not names (roles, places, sections, months, connectives).
_NOT_NAMES = frozenset(
    """
    a am an and as at by for from in of on or pm re the to via who with over regarding about after before during
    than this that these those he she his her they their it its is was were will has have had be been not no
    patient patients pt nurse nursing physician physicians doctor doctors clinician clinicians provider providers
    team service services staff resident residents fellow fellows attending radiologist radiology surgeon surgery
    surgical emergency department dept ed er icu micu sicu ccu nicu picu pacu or unit floor clinic hospital
    medicine medical oncology trauma cardiology pulmonary neurology orthopedics urology pediatrics obstetrics
    gynecology ob gyn primary care referring ordering covering on-call charge house officer officers md do rn np pa
    pa-c phd mbbs frcr dds findings finding impression impressions report results result critical urgent stat
    telephone phone pager page paged call called message verbally verbal person bedside time date
    jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday
    dr drs mr mrs ms prof
    today tonight yesterday morning afternoon evening night
    xxxx chest radiograph radiographs view views lateral frontal portable ap pa ct mri xr cxr exam study
    left right bilateral upper lower lobe lung lungs heart
    brain head neck spine cervical thoracic lumbar abdomen pelvis knee shoulder angiography angiogram without
    """.split()
)
# After a title or a label the name comes first: "DR. XXXX WAS NOTIFIED", "MR CHEST WITHOUT CONTRAST" and
# "PATIENT WITH COUGH" hold none.
_NOT_NAME_FIRST = rf"(?!(?i:{'|'.join(sorted(map(re.escape, _NOT_NAMES), key=len, reverse=True))})(?![\w'\-]))"
_COMM = (
    r"(?i:discussed(?:\s+(?:by\s+telephone|by\s+phone|directly|in\s+person|verbally))?\s+with|d/w|"
    r"communicated\s+(?:to|with)|called\s+(?:to|in\s+to)|paged\s+(?:to)?|notified|relayed\s+to|conveyed\s+to|"
    r"reported\s+to|spoke\s+(?:with|to)|spoken\s+to|informed|telephoned|reviewed\s+with|given\s+to|faxed\s+to|"
    r"sent\s+to|read\s+back\s+(?:by|to)|acknowledged\s+by|confirmed\s+by)"
)
# Words that may stand between a cue and the name: "discussed with the referring physician, Dr. X".
_FILLER = (
    r"(?:(?:the|a|referring|ordering|covering|on-call|primary|treating|physician|clinician|provider|team|"
    r"nurse|practitioner|doctor|resident|fellow|attending|surgeon|PA|NP|RN|ED|ER|ICU|of|service|care|patient's|"
    r"house\s+officer|charge)[\s,]+)*"
)
_LABEL = (
    r"(?i:electronically\s+signed\s+by|signed\s+by|e-signed\s+by|dictated\s+by|transcribed\s+by|reviewed\s+by|"
    r"interpreted\s+by|read\s+by|verified\s+by|approved\s+by|prepared\s+by|attending(?:\s+radiologist)?|"
    r"radiologist|resident|fellow|technologist|tech|referring\s+(?:physician|provider|doctor|clinician)|"
    r"ordering\s+(?:physician|provider|doctor|clinician)|referred\s+by|ordered\s+by|patient\s+name|patient|"
    r"name|cc|copy\s+to|pcp|signature)"
)
_CREDENTIAL = r"(?:M\.?D|D\.?O|R\.?N|N\.?P|P\.?A(?:-C)?|Ph\.?D|MBBS|FRCR|FRCPC|DDS|RT\s*\(R\)|RPA|CRNP|ARNP)\b\.?"
# Without a comma only the unambiguous ones: "Chest PA" is a view, "John Smith MD" a person.
_CREDENTIAL_BARE = r"(?:M\.D\.|MD|Ph\.?D\.?|MBBS|FRCR|DDS)\b"

# --- dates and times ------------------------------------------------------------------------------
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_MONTH_CI = rf"(?i:{_MONTH})"  # with a year beside it, "MARCH 4, 2021" is a date too
_YEAR = r"(?:19|20)\d{2}"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"

# Each entry: (type, score, pattern). A pattern's named group ``phi`` is the span; without it, the match.
_PATTERNS: list[tuple[str, float, str]] = [
    # Names after a title, a communication cue, a label, or before a credential.
    ("NAME", 0.9, rf"\b{_TITLE}\s+{_NOT_NAME_FIRST}(?P<phi>{_NAME})"),
    ("NAME", 0.85, rf"\b{_COMM}[\s,:]+{_FILLER}(?:{_TITLE}\s+)?(?P<phi>{_NAME})"),
    (
        "NAME",
        0.85,
        rf"\b{_LABEL}\s*[:,]?\s*(?:{_TITLE}\s+)?{_NOT_NAME_FIRST}(?P<phi>{_NAME})"
        rf"(?=\s*(?:,|$|\n|\.|\s+{_CREDENTIAL}|\s+on\b|\s+at\b|\s*\())",
    ),
    ("NAME", 0.85, rf"\b{_LABEL}\s*:\s*(?:{_TITLE}\s+)?{_NOT_NAME_FIRST}(?P<phi>{_NAME})"),
    ("NAME", 0.85, rf"(?P<phi>{_NAME}),\s*{_CREDENTIAL}"),
    ("NAME", 0.85, rf"(?P<phi>{_NAME})\s+{_CREDENTIAL_BARE}"),
    ("NAME", 0.85, rf"(?P<phi>{_NAME})\s+\({_CREDENTIAL}\)"),
    ("NAME", 0.9, rf"\b{_LABEL}\s*:\s*(?P<phi>{_SURNAME},\s+{_NAME})"),
    ("NAME", 0.85, rf"\bI,\s+(?:{_TITLE}\s+)?(?P<phi>{_NAME}),"),
    # Dates: month names (a capital, or all capitals), numeric dates presidio's patterns miss.
    ("DATE", 0.8, rf"\b{_MONTH_CI}\.?\s+{_DAY},?\s+{_YEAR}\b"),
    ("DATE", 0.8, rf"\b{_DAY}\s+{_MONTH_CI}\.?,?\s+{_YEAR}\b"),
    ("DATE", 0.7, rf"\b{_MONTH}\.?\s+{_YEAR}\b"),
    ("DATE", 0.7, rf"\b{_MONTH}\.?\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\b(?!\s*(?:mm|cm|%))"),
    ("DATE", 0.7, rf"\b(?:0?[1-9]|1[0-2])/{_YEAR}\b"),
    ("DATE", 0.7, rf"\b(?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:{_YEAR}|\d{{2}})\b"),
    ("DATE", 0.7, rf"\b{_YEAR}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b"),
    (
        "DATE",
        0.7,
        r"(?i:\b(?:on|dated|date|from|since|of|comparison|prior|study|exam|examination)\s*:?\s*)"
        r"(?P<phi>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))\b(?!/)",
    ),
    # Times: 14:32, 2:15 p.m., 1430 hours, 9 am.
    ("TIME", 0.8, r"\b(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s*(?i:a\.?m\.?|p\.?m\.?)(?![a-z]))?"),
    ("TIME", 0.8, r"\b(?:1[0-2]|0?[1-9])\s*(?i:a\.m\.|p\.m\.|am\b|pm\b)"),
    ("TIME", 0.8, r"\b(?:[01]\d|2[0-3])[0-5]\d\s*(?i:hours|hrs|hr|h)\b"),
    ("TIME", 0.7, r"(?i:\bat\s+)(?P<phi>(?:[01]\d|2[0-3])[0-5]\d)\b(?!\s*(?:mm|cm|ml|%))"),
    # Identifiers: after a label; long digit runs; letter-prefixed numbers (SSNs: presidio's UsSsnRecognizer).
    (
        "ID",
        0.9,
        r"(?i:\b(?:accession|acc|mrn|medical\s+record|record|study|exam|order|patient|pt|case|requisition|"
        r"encounter|visit|fin|csn|ssn|account|acct|specimen|report|unit|id)\s*(?:#|no\.?|number|num|id)?\s*[:#]?\s*)"
        r"(?P<phi>(?:[A-Z]{1,4}[\s-]?)?\d[\dA-Z]*(?:[\s-]\d[\dA-Z]*)*(?:\s?[A-Z]\b)?)",
    ),
    ("ID", 0.5, r"\b\d{6,}\b"),
    ("ID", 0.5, r"\b[A-Z]{1,4}-?\d{5,}\b"),
    # Phones and pagers.
    (
        "PHONE",
        0.95,
        r"(?i:\b(?:pager|beeper|pgr|pg|page|ext|extension|phone|tel|telephone|cell|mobile|callback|call\s+back|"
        r"fax|contact|number|paged\s+(?:at|to)|faxed\s+to|reached\s+at|call\b(?:(?!\n)[^;]){0,40}?\bat)"
        r"\.?\s*(?:#|number|no\.?)?\s*[:#]?\s*)"
        r"(?P<phi>\+?\(?\d(?:[\d()]|[-.\s]\(?(?=\d)){2,}(?:\s*(?:x|ext\.?)\s*\d{1,6})?)",
    ),
    (
        "PHONE",
        0.9,
        r"(?<![\d-])(?:(?:\+?\d{1,3}|001)[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,6})?\b",
    ),
    ("PHONE", 0.6, r"(?<![\w-])\d-\d{4}\b"),
    ("PHONE", 0.6, r"\b\d{3}-\d{4}\b"),
    # Ages over 89 (HIPAA Safe Harbor): the number only.
    ("AGE", 0.9, r"\b(?P<phi>9\d|1[0-2]\d)(?=\s*-?\s*(?i:years?[\s-]*old|year|yr|y\.?o\.?\b|y/o|yo\b))"),
    ("AGE", 0.9, r"(?i:\b(?:age|aged|age:)\s*)(?P<phi>9\d|1[0-2]\d)\b"),
    # Addresses: a street address (number, words, a street type), or "City, ST 12345".
    (
        "ADDRESS",
        0.8,
        r"\b\d{1,6}\s+(?:[A-Z][a-z]+\.?\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Drive|Dr|Lane|Ln|"
        r"Way|Court|Ct|Place|Pl|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Terrace|Ter|Trail|Trl|Square|Sq|Plaza|Plz|"
        r"Alley|Bypass|Crossing|Heights|Hills|Junction|Loop|Park|Pass|Path|Pike|Point|Ridge|Route|Row|Run|"
        r"Station|Summit|Turnpike|View|Village|Ville|Walk|Estates|Gardens|Grove|Harbor|Haven|Island|Lake|Lakes|"
        r"Manor|Meadows|Mill|Mills|Mount|Mountain|Orchard|Pines|Port|Ports|Prairie|Ranch|Shore|Shores|Spring|"
        r"Springs|Stream|Valley|Vista|Well|Wells|Creek|Crescent|Field|Fields|Forest|Fort|Freeway|Glen|Green|"
        r"Greens|Expressway|Extension|Falls|Ferry|Ford|Fork|Forks|Gateway|Hollow|Inlet|Key|Knoll|Knolls|"
        r"Landing|Light|Locks|Lodge|Mall|Motorway|Neck|Oval|Overpass|Radial|Rapids|Rest|Roads|Rue|Skyway|"
        r"Spur|Stravenue|Throughway|Trace|Track|Tunnel|Underpass|Union|Unions|Via|Viaduct|Views|Ways|Wall|"
        r"Bridge|Brook|Brooks|Burg|Burgs|Camp|Canyon|Cape|Causeway|Center|Centers|Cliff|Cliffs|Club|Common|"
        r"Commons|Corner|Corners|Course|Courts|Cove|Coves|Crest|Curve|Dale|Dam|Divide|Drives|Estate|Flat|Flats|"
        r"Fords|Garden|Glens|Grove|Groves|Harbors|Heights|Isle|Islands|Lights|Lock|Mews|Mission|Mountains|Nook|"
        r"Parks|Parkways|Passage|Pine|Plain|Plains|Radial|Ramp|Shoal|Shoals|Squares|Streets|Trafficway|Tracks|"
        r"Unions)s?\b\.?(?:,?\s+(?:Apt\.?|Suite|Ste\.?|Unit|#)\s*\w+)?",
    ),
    (
        "ADDRESS",
        0.85,
        r"(?i:\b(?:address|addr|lives\s+at|residing\s+at|resides\s+at)\s*:?\s*)"
        r"(?P<phi>\S(?:[^\n]|\n(?!\n)){2,80}?)(?<!\b(?:Apt|Edif|Depto|Ste|No))(?=\.(?:\s+(?:\p{Lu}|\d+\.\s)|\s*\Z)|;|\n\n|\Z)",
    ),
    ("ADDRESS", 0.8, r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2},\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"),
]  # e-mail addresses: presidio's EmailRecognizer (see _presidio_recognizers)


@dataclass(frozen=True)
class PhiSpan:
    """One span of PHI found in a text: ``text[start:end]`` is of type ``kind`` (a key of PLACEHOLDERS)."""

    start: int
    end: int
    kind: str
    score: float


@functools.cache
def _recognizer_class() -> type:
    """The recogniser class, made on first use: importing presidio takes seconds, and most runs
    that import this module (the output guard off: compare, the demo) never de-identify."""
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class _ReportPhiRecognizer(LocalRecognizer):
        """presidio recogniser for one PHI type from report-specific patterns, each with its context in the pattern.

        presidio's ``PatternRecognizer`` reports the whole match; ours report the ``phi`` group, so a cue
        ("discussed with", "MRN:") decides the type without being replaced itself, and trims name spans of
        capitalised words that are roles or connectives ("Dr. Smith At" -> "Smith").
        """

        def __init__(self, kind: str, patterns: list[tuple[float, str]]):
            self.kind = kind
            self.compiled = [(score, re.compile(pattern, re.MULTILINE)) for score, pattern in patterns]
            super().__init__(supported_entities=[kind], name=f"radllama_{kind.lower()}")

        def load(self) -> None:  # noqa: D102 - nothing to load
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:  # noqa: D102
            results = []
            for score, pattern in self.compiled:
                for match in pattern.finditer(text):
                    group = "phi" if "phi" in pattern.groupindex else 0
                    start, end = match.span(group)
                    if self.kind == "NAME":
                        start, end = _trim_name(text, start, end)
                    elif self.kind in ("ID", "PHONE") and sum(c.isdigit() for c in text[start:end]) < 4:
                        continue  # "x 1.5 cm" after a cue is a size, not an extension
                    if end > start:
                        results.append(RecognizerResult(self.kind, start, end, score))
            return results

    return _ReportPhiRecognizer


@functools.cache
def _offline_email_recognizer_class() -> type:
    """presidio's ``EmailRecognizer`` with its domain check kept offline.

    presidio validates the domain with ``tldextract``, whose default fetches the Public Suffix List from
    the internet on first use; here the list is the snapshot tldextract ships. An address whose domain is
    no public suffix (``pacs.local``) keeps the pattern's score instead of being dropped: a hospital's
    internal address is PHI too.
    """
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class _OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool | None:  # noqa: D102
            return True if extract(pattern_text).fqdn else None

    return _OfflineEmailRecognizer


def _presidio_recognizers() -> list:
    """presidio's own recognisers for the PHI types they cover (their entity names map by _PRESIDIO_TYPES)."""
    from presidio_analyzer.predefined_recognizers import DateRecognizer, PhoneRecognizer, UsSsnRecognizer

    return [
        DateRecognizer(),
        # North American numbers: phonenumbers validates them; other regions read clinical numbers as phones.
        PhoneRecognizer(supported_regions=("US",), leniency=1),
        _offline_email_recognizer_class()(),
        UsSsnRecognizer(),
    ]


@functools.cache
def _anonymizer() -> tuple[Any, type, dict[str, Any]]:
    """presidio-anonymizer's engine, its result class and a "replace" operator per PHI type, made on first
    use (as the analyzer: runs with the guard off never import presidio)."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    operators = {kind: OperatorConfig("replace", {"new_value": value}) for kind, value in PLACEHOLDERS.items()}
    return AnonymizerEngine(), RecognizerResult, operators


def replace_spans(text: str, spans: Iterable[PhiSpan]) -> str:
    """``text`` with each span replaced by its type's placeholder; ``spans`` non-overlapping, in order.

    The one replacement: :meth:`Deidentifier.redact` and the output guard both use it. presidio-anonymizer
    does the replacing; :meth:`Deidentifier.find` has already chosen among overlapping spans, so overlaps
    here are a bug and refused rather than left to presidio's own merging.
    """
    spans = list(spans)
    last = 0
    for span in spans:
        if span.start < last:
            raise ValueError(f"overlapping or unordered PHI spans at {span.start}")
        last = span.end
    if not spans:
        return text
    engine, result, operators = _anonymizer()
    found = [result(span.kind, span.start, span.end, span.score) for span in spans]
    # No merging of same-type spans with only spaces between: "[DATE] [DATE]" stays two placeholders.
    return engine.anonymize(text, found, operators, merge_entities_with_spaces=False).text


def _trim_name(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop leading words that are not names and cut at the next one ("SMITH AT 2 PM"); empty when none is left."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    while words and text[words[0][0] : words[0][1]].strip(".,").lower() in _NOT_NAMES:
        words.pop(0)
    for i, (a, b) in enumerate(words):
        word = text[a:b].strip(".,")
        if word.lower() in _NOT_NAMES and not (i and len(word) == 1 and word.isupper()):  # "John A. Smith"
            words = words[:i]
            break
    # A lone initial ("Dr. A") is not a name we can tell apart from a label.
    if not words or (len(words) == 1 and len(text[words[0][0] : words[0][1]].strip(".")) < 2):
        return start, start
    return words[0][0], words[-1][1]


class Deidentifier:
    """Finds PHI spans with a presidio ``AnalyzerEngine`` and replaces them with typed placeholders."""

    def __init__(self) -> None:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        registry = RecognizerRegistry(supported_languages=["en"])
        by_kind: dict[str, list[tuple[float, str]]] = {}
        for kind, score, pattern in _PATTERNS:
            by_kind.setdefault(kind, []).append((score, pattern))
        for kind, patterns in by_kind.items():
            registry.add_recognizer(_recognizer_class()(kind, patterns))
        for recognizer in _presidio_recognizers():
            registry.add_recognizer(recognizer)
        self.engine = AnalyzerEngine(
            registry=registry,
            nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
            supported_languages=["en"],
        )

    def find(self, text: str) -> list[PhiSpan]:
        """Non-overlapping PHI spans in ``text``, in order; higher-scoring, then longer, spans win overlaps."""
        if not text:
            return []
        found = [
            PhiSpan(r.start, r.end, _PRESIDIO_TYPES.get(r.entity_type, r.entity_type), r.score)
            for r in self.engine.analyze(text=text, language="en")
            if r.score >= _MIN_SCORE and r.end > r.start
        ]
        # Placeholders already in the text are not PHI (a de-identified text stays as it is).
        kept_out = [m.span() for m in _PLACEHOLDER_RE.finditer(text)]
        chosen: list[PhiSpan] = []
        for span in sorted(found, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
            if any(span.start < e and s < span.end for s, e in kept_out):
                continue
            if all(span.end <= c.start or span.start >= c.end for c in chosen):
                chosen.append(span)
        return sorted(chosen, key=lambda s: s.start)

    def redact(self, text: str) -> tuple[str, Counter]:
        """``text`` with each PHI span replaced by its placeholder, and the count of spans per type."""
        spans = self.find(text)
        return replace_spans(text, spans), Counter(span.kind for span in spans)


@functools.cache
def default_deidentifier() -> Deidentifier:
    """One shared engine per process (building it compiles a few hundred patterns)."""
    return Deidentifier()


def find_phi(text: str) -> list[PhiSpan]:
    """PHI spans in ``text`` (see :class:`Deidentifier`)."""
    return default_deidentifier().find(text)


def deidentify(text: str) -> str:
    """``text`` with PHI replaced by typed placeholders (``[NAME]``, ``[DATE]``, ...)."""
    return default_deidentifier().redact(text)[0]


DEID_FIELDS = ("findings", "impression", "indication", "comparison")


def deidentify_records(records: Iterable[dict], fields: tuple[str, ...] = DEID_FIELDS) -> dict[str, int]:
    """Replace PHI in the text fields of split records, in place; the number of spans replaced per type.

    The counts (never the text) go into the split's manifest.
    """
    counts: Counter = Counter()
    deid = default_deidentifier()
    for rec in records:
        for field in fields:
            if isinstance(rec.get(field), str) and rec[field]:
                rec[field], found = deid.redact(rec[field])
                counts.update(found)
    return {kind: counts.get(kind, 0) for kind in PLACEHOLDERS}


def engine_version() -> str:
    """What did the de-identification, for manifests and provenance."""
    from importlib.metadata import version

    return f"radllama.deid (presidio-analyzer {version('presidio-analyzer')})"


# --- the output guard -------------------------------------------------------------------------------
PHI_GUARD_MODES = ("redact", "flag", "off")


@dataclass(frozen=True)
class GuardResult:
    """A generated text after the guard, and the PHI-like spans it held that its source did not, per type."""

    text: str
    found: dict[str, int]


# Words and single punctuation marks: what the guard compares, so "Li" is never part of "limits".
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def _held_by(span_text: str, source_tokens: list[str], fold: bool) -> bool:
    """Whether the source holds the span as whole words: its tokens, in order, at token boundaries
    (whitespace ignored; case too with ``fold``)."""
    want = _TOKEN_RE.findall(span_text.casefold() if fold else span_text)
    n = len(want)
    if fold:
        source_tokens = [t.casefold() for t in source_tokens]
    return n > 0 and any(source_tokens[i : i + n] == want for i in range(len(source_tokens) - n + 1))


class _Source:
    """A source text as the guard compares against it; its own names are found only when needed."""

    def __init__(self, text: str) -> None:
        self.text = text or ""
        self.tokens = _TOKEN_RE.findall(self.text)
        self._names: list[list[str]] | None = None

    def holds(self, span_text: str, kind: str) -> bool:
        """Whether this source holds a span of an answer (see :func:`guard_output`)."""
        if kind != "NAME":
            return _held_by(span_text, self.tokens, fold=True)
        if _held_by(span_text, self.tokens, fold=False):
            return True
        if self._names is None:
            names = [s for s in find_phi(self.text) if s.kind == "NAME"]
            self._names = [_TOKEN_RE.findall(self.text[s.start : s.end]) for s in names]
        return any(_held_by(span_text, name, fold=True) for name in self._names)


def check_guard_mode(mode: str) -> str:
    """``mode`` when it is a guard mode, else a one-line error."""
    if mode not in PHI_GUARD_MODES:
        raise RadLlamaError(f"--phi-guard must be one of {', '.join(PHI_GUARD_MODES)}, not {mode!r}")
    return mode


def guard_output(output: str, source: str, mode: str = "redact") -> GuardResult:
    """Check a generated text for PHI-like spans absent from its own source (the findings it was made from).

    A name, date or number the model wrote that its findings do not hold was learnt from another patient's
    report: ``redact`` replaces such spans with their placeholders, ``flag`` only counts them, ``off``
    does nothing. Spans that the source holds too, as whole words, are kept: compared token by token at
    word boundaries, whitespace ignored, so "Dr. Li" is not kept because the findings say "limits", nor
    "Dr. Ng" because they say "lung". Case is ignored except for names: a name is kept when the source
    holds it in the same case, or as a name of its own in any case ("DR. QUIST" holds "Quist") — not
    when "Dr. Young" meets "a young patient", or "Dr. Ng" an "NG tube".
    """
    if check_guard_mode(mode) == "off" or not output:
        return GuardResult(output, {})
    src = _Source(source)
    foreign = [s for s in find_phi(output) if not src.holds(output[s.start : s.end], s.kind)]
    found = dict(Counter(s.kind for s in foreign))
    if mode == "flag" or not foreign:
        return GuardResult(output, found)
    return GuardResult(replace_spans(output, foreign), found)


class GuardCounter:
    """Running counts of the guard's work, for a server's /health and logs: never any text."""

    def __init__(self, mode: str) -> None:
        self.mode = check_guard_mode(mode)
        self.checked = 0
        self.with_phi = 0
        self.spans: Counter = Counter()

    def apply(self, outputs: list[str], sources: list[str], sent: bool = False) -> tuple[list[str], dict[str, int]]:
        """Guard each output against its source; the guarded texts and the spans found in them, per type.

        ``sent``: the outputs were already streamed to the client, so they can only be counted (``flag``).
        """
        texts, found = [], Counter()
        mode = "flag" if sent and self.mode == "redact" else self.mode
        for output, source in zip(outputs, sources, strict=True):
            result = guard_output(output, source, mode)
            texts.append(result.text)
            found.update(result.found)
            self.checked += self.mode != "off"
            self.with_phi += bool(result.found)
        self.spans.update(found)
        return texts, dict(found)

    def stats(self) -> dict:
        """``{"mode", "checked", "with_phi", "spans": {type: n}}``."""
        return {"mode": self.mode, "checked": self.checked, "with_phi": self.with_phi, "spans": dict(self.spans)}
