"""Sections of a MIMIC-CXR free-text report (FINDINGS:, IMPRESSION:, ...).

Follows the rules of the dataset maintainers' parser (MIT-LCP/mimic-cxr, ``txt/section_parser.py``):
a section starts at a line `` NAME:`` whose name is capitals, spaces and ``()/,-``; names are
normalised (``CONCLUSION`` → impression, ``COMPARISONS`` → comparison, common typos, and view
descriptions such as ``PA AND LATERAL VIEWS OF THE CHEST`` → findings); empty findings/impression
sections are discarded; when a report has neither, its last section is split at the first blank
line and the rest becomes ``last_paragraph``. One addition: ``SUMMARY`` also counts as impression.
"""

from __future__ import annotations

import re

# A header: newline, one space (MIMIC indents every line), capitals, a colon, whitespace.
_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")
_BLANK_LINE = "\n \n"

_ALIASES: dict[str, tuple[str, ...]] = {
    "impression": (
        "conclusion", "summary", "findings and impression", "findings/impression",
        "findings/ impression", "impresson", "imprression", "imoression", "impressoin",
        "imprssion", "impresion", "imperssion", "mpression", "impession", "ndication",
    ),
    "findings": (
        "chest, two views", "finding", "findins", "findindgs", "findgings", "findngs",
        "findnings", "finidngs", "reference findings",
    ),
    "comparison": (
        "comparisons", "reference exam", "comparison exam", "comparison film", "comparision",
        "comparsion", "comparrison", "comparisions",
    ),
    "indication": ("reason for examination", "reason for exam", "clinical indication", "idication"),
    "history": ("clinical history", "clinical information", "patient history", "pfi"),
    "examination": ("exam", "type of examination"),
    "recommendations": ("recommendation(s)", "recommendation"),
    "wet read": ("wetread",),
}  # fmt: skip
_NAME_MAP = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
# Names containing one of these words are that section ("FINAL IMPRESSION" → impression).
_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
# Headers that describe the views of the study introduce what is in effect the findings.
_VIEW_WORDS = re.compile(
    "chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|frontal and|"
    "two views|frontal view|pa view|ap view|one view|lateral view|bone window|frontal upright|"
    "frontal semi-upright|ribs|pa and lat"
)


def normalize_section_name(raw: str) -> str:
    """Map a header as written to its canonical section name."""
    name = raw.lower().strip()
    if name in _NAME_MAP:
        return _NAME_MAP[name]
    for main in _MAIN_SECTIONS:
        if main in name:
            return main
    return "findings" if _VIEW_WORDS.search(name) else name


def split_sections(text: str) -> list[tuple[str, str]]:
    """Split a report into ``(canonical name, raw text)`` pairs, in report order.

    A report without any header is one ``full report`` section (plus ``last_paragraph``
    when it has a blank line).
    """
    sections: list[tuple[str, str]] = []
    match = _HEADER.search(text)
    if match is None:
        sections.append(("full report", text))
    else:
        sections.append(("preamble", text[: match.start(1)]))
    while match is not None:
        name, start = normalize_section_name(match.group(1)), match.end()
        # The next header is searched from the end of this header's line, as the maintainers
        # do, so text on the header line can never itself start a section.
        line_end = text.find("\n", start)
        match = _HEADER.search(text, start + max(line_end - start, 0))
        sections.append((name, text[start : match.start() if match else len(text)]))
    # An empty findings/impression section is a title or a duplicate header: drop it.
    sections = [(n, s) for n, s in sections if n not in ("findings", "impression") or s.strip()]
    names = {n for n, _ in sections}
    if "findings" not in names and "impression" not in names and _BLANK_LINE in sections[-1][1]:
        last_name, last_text = sections[-1]
        head, rest = last_text.split(_BLANK_LINE, 1)
        sections[-1] = (last_name, head)
        sections.append(("last_paragraph", rest))
    return sections


def findings_and_impression(text: str) -> tuple[str, str]:
    """The last FINDINGS and the last IMPRESSION section of a report ("" when absent), stripped."""
    found = {"findings": "", "impression": ""}
    for name, body in split_sections(text):
        if name in found:
            found[name] = body.strip()
    return found["findings"], found["impression"]
