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

from radllama.inference.base import Completion, Decoding
from radllama.rouge import ROUGE_TYPES, rouge_pair


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

    def sampling(self, max_new_tokens: int) -> Decoding:
        """How the sampled candidates are drawn (offline backends; the server takes the same fields)."""
        return Decoding(max_new_tokens, self.temperature, self.top_p, seed=self.seed)


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


def mbr_pick(own: Sequence[Completion], retrieved: Sequence[str] | None) -> Completion:
    """The consensus of a case's generated candidates (greedy first) and retrieved impressions."""
    texts = [c.text for c in own] + list(retrieved or [])
    best = consensus(texts)
    spent = sum(c.completion_tokens for c in own)  # the case's decoding cost, whichever wins
    source = "greedy" if best == 0 else "sample" if best < len(own) else "retrieved"
    reason = own[best].finish_reason if best < len(own) else "stop"
    return Completion(texts[best], own[0].prompt_tokens, spent, reason, source)


def mbr_choose(
    greedy: Sequence[Completion], sampled: Sequence[Completion], pool: Sequence[Sequence[str] | None]
) -> list[Completion]:
    """One answer per case: ``greedy[i]``, its samples ``sampled[i*s:(i+1)*s]`` (s per case, in case
    order) and the retrieved impressions ``pool[i]`` compete. Used by ``generate`` and the server alike."""
    if len(pool) != len(greedy) or len(sampled) % max(1, len(greedy)):
        raise ValueError("MBR needs one pool and the same number of samples per case")
    s = len(sampled) // len(greedy) if greedy else 0
    return [mbr_pick([g, *sampled[i * s : (i + 1) * s]], pool[i]) for i, g in enumerate(greedy)]
