"""Statistics of a review study: score summaries, inter-rater agreement, correlation with ROUGE-L.

Pure functions over :class:`Rating` tuples, so they are unit-tested on hand-made data.
Agreement uses the libraries (``krippendorff``, ``sklearn``); no statistic is re-implemented here.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from radllama.review.store import CRITERIA, MAX_SCORE, MIN_SCORE

SCALE = list(range(MIN_SCORE, MAX_SCORE + 1))


class Rating(NamedTuple):
    """One score of one rater on one criterion of one candidate."""

    rater: str
    case: int
    candidate: str
    system: str
    criterion: str
    score: int


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def system_scores(ratings: list[Rating], n_cases: int) -> dict[str, dict[str, dict]]:
    """Per system and criterion: mean score, n, and the paper's scale.

    The paper's scale (Figure 4) is each rater's sum over the cases, averaged over raters; it is
    only comparable across systems when every rater scored every case, so ``complete`` says so.
    """
    by: dict[tuple[str, str], dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in ratings:
        by[(r.system, r.criterion)][r.rater][r.case] = r.score
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (system, criterion), per_rater in sorted(by.items()):
        scores = [s for cases in per_rater.values() for s in cases.values()]
        sums = [sum(cases.values()) for cases in per_rater.values()]
        out[system][criterion] = {
            "mean": float(np.mean(scores)),
            "n": len(scores),
            "raters": len(per_rater),
            "paper_scale": float(np.mean(sums)),
            "complete": all(len(cases) == n_cases for cases in per_rater.values()),
        }
    return dict(out)


def reliability_matrix(ratings: list[Rating], criteria: tuple[str, ...] = CRITERIA) -> tuple[list[str], np.ndarray]:
    """Raters × units matrix (unit = candidate × criterion), NaN where a rater gave no score."""
    raters = sorted({r.rater for r in ratings})
    units = sorted({(r.candidate, r.criterion) for r in ratings if r.criterion in criteria})
    col = {u: j for j, u in enumerate(units)}
    row = {name: i for i, name in enumerate(raters)}
    m = np.full((len(raters), len(units)), np.nan)
    for r in ratings:
        if r.criterion in criteria:
            m[row[r.rater], col[(r.candidate, r.criterion)]] = r.score
    return raters, m


def krippendorff_alpha(matrix: np.ndarray) -> float | None:
    """Ordinal Krippendorff's alpha over the 1-5 scale; None when undefined.

    Undefined means fewer than two raters, no unit scored by two raters, or no variation at all
    (expected disagreement 0, where alpha is 0/0).
    """
    import krippendorff

    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape[0] < 2 or not (np.sum(~np.isnan(matrix), axis=0) >= 2).any():
        return None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = krippendorff.alpha(reliability_data=matrix, value_domain=SCALE, level_of_measurement="ordinal")
    return _finite(float(value))


def alpha_by_criterion(ratings: list[Rating]) -> dict[str, float | None]:
    """Ordinal alpha per criterion and ``overall`` (all criteria's units pooled)."""
    out = {c: krippendorff_alpha(reliability_matrix(ratings, (c,))[1]) for c in CRITERIA}
    out["overall"] = krippendorff_alpha(reliability_matrix(ratings)[1])
    return out


def weighted_kappa(a: list[int], b: list[int]) -> float | None:
    """Quadratic-weighted Cohen's kappa of two raters' paired scores; None when undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError("kappa needs paired scores")
    if len(a) < 2:
        return None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # sklearn warns when kappa is undefined; we return None
        value = cohen_kappa_score(a, b, labels=SCALE, weights="quadratic")
    return _finite(float(value))


def kappa_by_pair(ratings: list[Rating]) -> dict[str, dict[str, float | None | int]]:
    """Quadratic kappa for every pair of raters, per criterion and ``overall``, on the items both scored."""
    scores: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for r in ratings:
        scores[r.rater][(r.candidate, r.criterion)] = r.score
    out: dict[str, dict] = {}
    for x, y in itertools.combinations(sorted(scores), 2):
        shared = sorted(set(scores[x]) & set(scores[y]))
        entry: dict[str, float | None | int] = {"n_items": len(shared)}
        for crit in (*CRITERIA, "overall"):
            keys = [k for k in shared if crit == "overall" or k[1] == crit]
            entry[crit] = weighted_kappa([scores[x][k] for k in keys], [scores[y][k] for k in keys])
        out[f"{x} vs {y}"] = entry
    return out


def spearman(x: list[float], y: list[float]) -> tuple[float | None, float | None, int]:
    """Spearman's rho and two-sided p (scipy); (None, None, n) when undefined (n < 3 or a constant side)."""
    from scipy.stats import spearmanr

    n = len(x)
    if n < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None, n
    res = spearmanr(x, y)
    return _finite(float(res.statistic)), _finite(float(res.pvalue)), n


def rouge_correlation(ratings: list[Rating], rouge_l: dict[str, float]) -> dict[str, dict]:
    """Spearman correlation of each candidate's mean score (over raters) with its ROUGE-L F1.

    Per criterion and ``overall`` (mean over raters and criteria). Candidates without a ROUGE-L
    value (the reference itself) are left out.
    """
    per: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in ratings:
        if r.candidate in rouge_l:
            per[(r.candidate, r.criterion)].append(r.score)
            per[(r.candidate, "overall")].append(r.score)
    out = {}
    for crit in (*CRITERIA, "overall"):
        cands = sorted(c for (c, k) in per if k == crit)
        rho, p, n = spearman([float(np.mean(per[(c, crit)])) for c in cands], [rouge_l[c] for c in cands])
        out[crit] = {"rho": rho, "p": p, "n": n}
    return out
