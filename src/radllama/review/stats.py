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


CORRELATION_TEST = (
    "Spearman's rho over candidates; p: permutation test within cases (ROUGE-L shuffled among the "
    "candidates of each case, {resamples:,} resamples, two-sided), since the candidates of one case share its "
    "reference and difficulty and are not independent; 95% CI: bootstrap over cases"
)
DEFAULT_RESAMPLES = 10_000


def clustered_spearman(
    x: list[float], y: list[float], cases: list[int], resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> dict:
    """Spearman's rho of ``x`` and ``y`` with inference that respects their grouping by case.

    p: the observed rho against rho with ``y`` shuffled within each case (vectorised; null: inside
    a case, which candidate has which ROUGE-L is unrelated to its score), None when no case has two
    candidates. ci95: percentile bootstrap resampling whole cases.
    """
    from scipy.stats import rankdata

    rho, _, n = spearman(x, y)
    out = {"rho": rho, "p": None, "ci95": [None, None], "n": n, "n_cases": len(set(cases)),
           "test": CORRELATION_TEST.format(resamples=resamples)}  # fmt: skip
    if rho is None:
        return out
    codes = np.unique(np.asarray(cases), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    if np.bincount(codes).max() >= 2:
        rx, ry = rankdata(x) - (n + 1) / 2, rankdata(y) - (n + 1) / 2
        # Sorting case code + uniform noise lays each case out in a block in random order; placing
        # that order on the cases' own positions permutes y within every case at once.
        order = np.argsort(codes + rng.random((resamples, n)), axis=1)
        perm = np.empty_like(order)
        perm[:, np.argsort(codes, kind="stable")] = order
        null = (ry[perm] @ rx) / np.sqrt((rx @ rx) * (ry @ ry))
        out["p"] = float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (resamples + 1))
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    xs, ys, boot = np.asarray(x, dtype=float), np.asarray(y, dtype=float), []
    for picks in rng.integers(0, len(members), size=(1000, len(members))):
        idx = np.concatenate([members[c] for c in picks])
        boot.append(spearman(list(xs[idx]), list(ys[idx]))[0])
    finite = [b for b in boot if b is not None]
    if finite:
        out["ci95"] = [float(q) for q in np.quantile(finite, [0.025, 0.975])]
    return out


def rouge_correlation(ratings: list[Rating], rouge_l: dict[str, float]) -> dict[str, dict]:
    """Spearman correlation of each candidate's mean score (over raters) with its ROUGE-L F1.

    Per criterion and ``overall`` (mean over raters and criteria). Candidates without a ROUGE-L
    value (the reference itself) are left out. Inference treats each case as a cluster
    (:func:`clustered_spearman`).
    """
    per: dict[tuple[str, str], list[int]] = defaultdict(list)
    case_of: dict[str, int] = {}
    for r in ratings:
        if r.candidate in rouge_l:
            per[(r.candidate, r.criterion)].append(r.score)
            per[(r.candidate, "overall")].append(r.score)
            case_of[r.candidate] = r.case
    out = {}
    for crit in (*CRITERIA, "overall"):
        cands = sorted(c for (c, k) in per if k == crit)
        means = [float(np.mean(per[(c, crit)])) for c in cands]
        out[crit] = clustered_spearman(means, [rouge_l[c] for c in cands], [case_of[c] for c in cands])
    return out
