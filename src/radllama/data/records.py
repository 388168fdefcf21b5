"""The split record shared by every data source, and the text normalisation it relies on."""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")
# Clauses: also after ';' and at every line break, for impressions written as "1. X; 2. Y" or a finding a line.
_CLAUSE_SPLIT = re.compile(r"(?<=[.;!?])\s+|\n")


def normalize_whitespace(text: str | None) -> str:
    """Collapse runs of whitespace to one space and strip; ``None`` becomes ``""``.

    De-identification tokens such as ``XXXX`` are ordinary text and are kept exactly.
    """
    return _WS.sub(" ", text or "").strip()


def text_key(text: str) -> str:
    """The key used to decide whether two texts are "the same" (lowercased, whitespace-collapsed)."""
    return normalize_whitespace(text).lower()


def make_record(
    rid: str,
    findings: str,
    impression: str,
    source: str,
    indication: str = "",
    comparison: str = "",
    mesh: list[str] | None = None,
) -> dict:
    """Build one split record in the shared format (see docs/DESIGN.md, "File formats")."""
    return {
        "id": rid,
        "findings": normalize_whitespace(findings),
        "impression": normalize_whitespace(impression),
        "indication": normalize_whitespace(indication),
        "comparison": normalize_whitespace(comparison),
        "mesh": list(mesh or []),
        "source": source,
    }


def missing_reason(findings: str, impression: str) -> str | None:
    """Why a report cannot be used (``None`` when it has both sections)."""
    if not findings and not impression:
        return "missing_findings_and_impression"
    if not findings:
        return "missing_findings"
    if not impression:
        return "missing_impression"
    return None


def split_sentences(text: str | None, clauses: bool = False) -> list[str]:
    """Sentences of a report section, stripped, none empty (decimals such as 2.5 cm stay whole).

    ``clauses``: also cut after ';' and at every line break. The default stays the plain sentence rule:
    the benchmark's sourced cases and the transplant task were built with it.
    """
    pattern = _CLAUSE_SPLIT if clauses else _SENT_SPLIT
    return [s.strip() for s in pattern.split(text or "") if s.strip()]
