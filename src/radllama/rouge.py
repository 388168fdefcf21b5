"""ROUGE-1/2/L F1 per (prediction, reference) pair, via Google's ``rouge-score``.

We never hand-roll ROUGE: the package is the reference implementation the RRS literature
reports, and its tokenizer/stemmer choices change scores by several points.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rouge_score import rouge_scorer

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
SCORER_NAME = "rouge-score 0.1.2, stemmer on"


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_pair(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one prediction against one reference.

    An empty (or whitespace-only) prediction scores 0 on every type.
    """
    if not prediction or not prediction.strip():
        return dict.fromkeys(ROUGE_TYPES, 0.0)
    # rouge-score's signature is score(target, prediction): reference first.
    scores = _scorer().score(reference or "", prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def rouge_many(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-pair ROUGE F1 lists, one list per ROUGE type (same order as the inputs)."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    out: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for pred, ref in zip(predictions, references, strict=True):
        for name, value in rouge_pair(pred, ref).items():
            out[name].append(value)
    return out
