"""How much of a system's answers are training impressions copied verbatim (issue #13's "why").

On a templated collection a tuned model can score well by copying the impression of a similar
training report; then it cannot beat a retrieval baseline by much. This module measures that on
a predictions file: the share of answers equal to one of the ``k`` nearest training impressions
(those a retrieval-augmented prompt shows) or to any training impression, and ROUGE-1 on the
copied and the written cases, beside a reference system's ROUGE-1 on the same cases.

An answer can also be copied from the case's own findings (issue #30): the MBR answers taken from the
extractive candidate (the findings' acute sentences, ``"candidate": "extractive"``) and any answer that is
whole findings sentences verbatim, in the findings' order. Those are counted apart (``copied_findings``,
``from_findings``) and are not "written": only an answer that is neither a training impression nor findings
sentences counts as written by the model itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radllama.data.records import split_sentences, text_key
from radllama.retrieval import TfidfRetriever, retrieved_impressions
from radllama.rouge import rouge_many


def _sentence_keys(text: str) -> list[str]:
    """A text's sentences, compared as text_key does (case and spacing ignored) and without end punctuation."""
    # Cut as the extractive candidate (radllama.generate.mbr) cuts the findings: clauses, line breaks included.
    keys = (text_key(s).rstrip(" .;!?") for s in split_sentences(text, clauses=True))
    return [k for k in keys if k]


def from_findings(record: dict) -> bool:
    """Whether an answer is copied from its case's findings: taken from the extractive candidate, or made of
    whole findings sentences verbatim, in the findings' order (a run of them, or the acute ones picked out)."""
    if record.get("candidate") == "extractive":
        return True
    said = _sentence_keys(record.get("prediction") or "")
    if not said:
        return False
    remaining = iter(_sentence_keys(record.get("findings") or ""))
    return all(any(key == f for f in remaining) for key in said)  # an in-order subsequence


def copy_analysis(
    predictions: Sequence[dict], reference: Sequence[dict], retriever: TfidfRetriever, k: int = 3
) -> dict:
    """Copying by one system (``predictions``), compared case by case with ``reference``.

    Both are predictions records of the same cases (``id``, ``findings``, ``reference``,
    ``prediction``); ``retriever`` is the model's own retrieval index (its records are the training
    reports) and ``k`` how many neighbours its prompt shows. Texts are compared by
    :func:`~radllama.data.records.text_key` (case and whitespace ignored).

    Returns the shares ``copied_nearest``, ``copied_any_training`` and ``copied_findings`` (:func:`from_findings`)
    and the groups (n, ROUGE-1, the reference system's ROUGE-1) ``copied`` (one of the nearest), ``from_findings``
    and ``written`` (neither a training impression nor copied from the findings).
    """
    by_id = {str(r["id"]): r for r in reference}
    missing = [str(r["id"]) for r in predictions if str(r["id"]) not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} cases have no prediction of the reference system (first: {missing[0]})")
    n = len(predictions)
    if n == 0:
        return {"n": 0}
    nearest = retrieved_impressions(retriever, [r["findings"] for r in predictions], k)
    every = {text_key(r["impression"]) for r in retriever.records}
    answers = [text_key(r["prediction"]) for r in predictions]
    shown = np.array([a in {text_key(i) for i in row or []} for a, row in zip(answers, nearest, strict=True)])
    anywhere = np.array([a in every for a in answers])
    findings = np.array([from_findings(r) for r in predictions], dtype=bool)
    refs = [r["reference"] for r in predictions]
    own = np.array(rouge_many([r["prediction"] for r in predictions], refs)["rouge1"])
    other = np.array(rouge_many([by_id[str(r["id"])]["prediction"] for r in predictions], refs)["rouge1"])

    def group(mask: np.ndarray) -> dict:
        m = int(mask.sum())
        return {"n": m, "rouge1": float(own[mask].mean()) if m else None,
                "reference_rouge1": float(other[mask].mean()) if m else None}  # fmt: skip

    return {
        "n": n,
        "k": k,
        "copied_nearest": float(shown.mean()),
        "copied_any_training": float(anywhere.mean()),
        "copied_findings": float(findings.mean()),
        "copied": group(shown),
        "from_findings": group(findings),
        # Written by the model itself: neither a training impression nor sentences of the case's findings.
        "written": group(~anywhere & ~findings),
    }


def candidate_sources(predictions: Sequence[dict]) -> dict[str, int]:
    """How many MBR answers came from the greedy answer, a sample, a retrieved impression or the extractive
    candidate."""
    counts: dict[str, int] = {}
    for r in predictions:
        if r.get("candidate"):
            counts[r["candidate"]] = counts.get(r["candidate"], 0) + 1
    return counts
