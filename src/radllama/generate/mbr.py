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

Clinically guided MBR (issue #20): ROUGE agreement rewards the commonest impression, so a small model
that answers "No acute disease" to a pneumothorax wins the vote with the normal neighbours. With
``clinical > 0`` each candidate's expected utility loses ``clinical`` per acute finding that the
consistency check (:mod:`radllama.consistency`) flags in it against the case's findings: omitted, invented, on the
wrong side, a hedged finding dropped or asserted as certain (every field of :data:`radllama.consistency.FIELDS`);
with ``extractive`` the findings' own sentences that state or hedge an acute finding compete as one more
candidate, so a case whose every generated or retrieved answer omits the finding
still has a faithful one to choose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from radllama.consistency import COVERED_BY, check, check_digest, finding_sides, stated
from radllama.data.records import split_sentences
from radllama.inference.base import Completion, Decoding
from radllama.labeller import PRESENT, UNCERTAIN
from radllama.rouge import ROUGE_TYPES, rouge_pair


@dataclass(frozen=True)
class MbrSettings:
    """``--decode mbr``: how many samples, how they are drawn, and what else competes."""

    samples: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    retrieved: int | None = None  # retrieved training impressions as candidates: None = the prompt's own
    seed: int = 0
    clinical: float = 0.0  # utility lost per consistency flag: omitted, unsupported, wrong side, hedge lost
    extractive: bool = False  # the findings' acute sentences compete as a candidate

    def describe(self) -> dict:
        utility = "mean ROUGE-1/2/L F1" + (f" - {self.clinical} x consistency flags" if self.clinical else "")
        out = {"mode": "mbr", **asdict(self), "utility": utility}
        if self.clinical or self.extractive:  # the picks depend on the check's rules
            out["consistency_rules"] = check_digest()
        return out

    def sampling(self, max_new_tokens: int) -> Decoding:
        """How the sampled candidates are drawn (offline backends; the server takes the same fields)."""
        return Decoding(max_new_tokens, self.temperature, self.top_p, seed=self.seed)


def utility(a: str, b: str) -> float:
    """Agreement of two impressions: mean ROUGE-1/2/L F1 (symmetric, as F1 is)."""
    scores = rouge_pair(a, b)
    return sum(scores[t] for t in ROUGE_TYPES) / len(ROUGE_TYPES)


def consensus(candidates: Sequence[str], penalties: Sequence[float] | None = None) -> int:
    """Index of the candidate with the highest mean utility against the others, less its penalty
    (the first on ties)."""
    n = len(candidates)
    if n == 1:
        return 0
    pair: dict[tuple[int, int], float] = {}
    for i in range(n):
        for j in range(i + 1, n):
            pair[i, j] = pair[j, i] = utility(candidates[i], candidates[j])
    scores = [sum(pair[i, j] for j in range(n) if j != i) / (n - 1) for i in range(n)]
    if penalties is not None:
        scores = [s - p for s, p in zip(scores, penalties, strict=True)]
    return max(range(n), key=lambda i: (scores[i], -i))


def consistency_flags(findings: str, impression: str) -> int:
    """How many flags the shipped check raises on an impression (acute findings omitted, invented, on the wrong
    side, hedged findings dropped or asserted: every field of ``check``), plus the findings it names without the
    side the findings give ("left pneumothorax" -> "pneumothorax"), hedged ones included."""
    flags = sum(len(v) for v in check(findings, impression).values())
    hedged = (PRESENT, UNCERTAIN)
    sided = {o: side for o, side in finding_sides(findings, hedged).items() if side != "bilateral"}
    if sided:
        named, said = stated(impression), finding_sides(impression, hedged)
        flags += sum(1 for o in sided if COVERED_BY.get(o, {o}) & named and o not in said)
    return flags


def extractive_impression(findings: str) -> str | None:
    """The findings' sentences that state or hedge an acute finding, in order (None when they state none).

    A sentence counts when the consistency check would flag an empty impression for omitting it or for dropping
    its hedged finding, so the candidate names exactly what the check asks for, in the findings' own words
    (sides, sizes and the hedge kept: "Cannot exclude small left effusion."). A finding the findings call gone
    ("Previously seen left pneumothorax is no longer visible.") is not stated, so its sentence stays out.
    """
    kept = [s for s in split_sentences(findings, clauses=True) if _acute_sentence(s)]
    return " ".join(kept) or None


def _acute_sentence(sentence: str) -> bool:
    flags = check(sentence, "")
    return bool(flags["omitted"] or flags["hedge_dropped"])


def pick(findings: str, candidates: Sequence[str], mbr: MbrSettings) -> tuple[int, list[str]]:
    """The MBR choice for one case: ``(index, candidates)``, the extractive candidate appended last when
    ``mbr.extractive`` and the findings state an acute finding."""
    texts = list(candidates)
    if mbr.extractive and (extract := extractive_impression(findings)) is not None:
        texts.append(extract)
    penalties = [mbr.clinical * consistency_flags(findings, t) for t in texts] if mbr.clinical else None
    return consensus(texts, penalties), texts


def mbr_pick(
    own: Sequence[Completion], retrieved: Sequence[str] | None, mbr: MbrSettings, findings: str = ""
) -> Completion:
    """The consensus of a case's generated candidates (greedy first), retrieved impressions and, with
    ``mbr.extractive``, the findings' acute sentences; ``mbr.clinical`` weighs consistency with ``findings``."""
    n_retrieved = len(retrieved or [])
    best, texts = pick(findings, [c.text for c in own] + list(retrieved or []), mbr)
    spent = sum(c.completion_tokens for c in own)  # the case's decoding cost, whichever wins
    source = (
        "greedy" if best == 0 else "sample" if best < len(own) else "retrieved"
        if best < len(own) + n_retrieved else "extractive"
    )  # fmt: skip
    reason = own[best].finish_reason if best < len(own) else "stop"
    return Completion(texts[best], own[0].prompt_tokens, spent, reason, source)


def mbr_choose(
    greedy: Sequence[Completion],
    sampled: Sequence[Completion],
    pool: Sequence[Sequence[str] | None],
    mbr: MbrSettings,
    findings: Sequence[str],
) -> list[Completion]:
    """One answer per case: ``greedy[i]``, its samples ``sampled[i*s:(i+1)*s]`` (s per case, in case
    order), the retrieved impressions ``pool[i]`` and, with ``mbr.extractive``, the acute sentences of
    ``findings[i]`` compete. Used by ``generate`` and the server alike."""
    if len(pool) != len(greedy) or len(findings) != len(greedy) or len(sampled) % max(1, len(greedy)):
        raise ValueError("MBR needs one pool, one findings text and the same number of samples per case")
    s = len(sampled) // len(greedy) if greedy else 0
    return [mbr_pick([g, *sampled[i * s : (i + 1) * s]], pool[i], mbr, findings[i]) for i, g in enumerate(greedy)]
