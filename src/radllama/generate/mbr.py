"""Minimum Bayes risk decoding: sample several impressions, add the retrieved ones, answer the
candidate that agrees most with all the others.

A decoding method, not a new model (issue #13). For each case the candidates are the greedy answer,
``samples`` sampled answers (temperature ``temperature``, nucleus ``top_p``) and the impressions of
the most similar training reports: by default those the prompt already shows, or ``retrieved``
nearest ones from the model's retrieval index (0: none).
The answer is the candidate with the highest expected utility (mean ROUGE F1 of rouge-score, the
metric we report) against the other candidates: a consensus, so an odd sample or an off-topic
neighbour rarely wins. Cost per case: ``samples + 1`` generations and ``(candidates)²`` ROUGE
scores (measured in BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from radllama.evaluate.rouge import ROUGE_TYPES, rouge_pair


@dataclass(frozen=True)
class MbrSettings:
    """``--decode mbr``: how many samples, how they are drawn, and what else competes."""

    samples: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    retrieved: int | None = None  # retrieved training impressions as candidates: None = the prompt's own
    seed: int = 0

    def describe(self) -> dict:
        return {"mode": "mbr", **asdict(self), "utility": "mean ROUGE-1/2/L F1"}


def utility(a: str, b: str) -> float:
    """Agreement of two impressions: mean ROUGE-1/2/L F1 (symmetric, as F1 is)."""
    scores = rouge_pair(a, b)
    return sum(scores[t] for t in ROUGE_TYPES) / len(ROUGE_TYPES)


def consensus(candidates: Sequence[str]) -> int:
    """Index of the candidate with the highest mean utility against the others (the first on ties)."""
    n = len(candidates)
    if n == 1:
        return 0
    pair: dict[tuple[int, int], float] = {}
    for i in range(n):
        for j in range(i + 1, n):
            pair[i, j] = pair[j, i] = utility(candidates[i], candidates[j])
    scores = [sum(pair[i, j] for j in range(n) if j != i) for i in range(n)]
    return max(range(n), key=lambda i: (scores[i], -i))
