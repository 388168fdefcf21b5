"""Statistics of the review study on hand-made ratings with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radllama.review import stats
from radllama.review.stats import Rating

NAN = math.nan

# Krippendorff (2011) "Computing Krippendorff's alpha-reliability", the 4-observer, 12-unit
# example with 1-5 values; the krippendorff package documents ordinal alpha = 0.815 for it.
KRIPP_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def ratings_from_matrix(matrix: list[list[float]], criterion: str = "coherence") -> list[Rating]:
    """Rows are raters, columns candidates (one criterion); NaN = not scored."""
    out = []
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if not math.isnan(v):
                out.append(Rating(f"r{i}", j, f"cand{j}", f"sys{j % 2}", criterion, int(v)))
    return out


def test_alpha_matches_krippendorff_2011_example() -> None:
    assert stats.krippendorff_alpha(np.array(KRIPP_2011)) == pytest.approx(0.815, abs=5e-4)
    # The same data through our Rating → matrix path.
    by = stats.alpha_by_criterion(ratings_from_matrix(KRIPP_2011))
    assert by["coherence"] == pytest.approx(0.815, abs=5e-4)
    assert by["overall"] == pytest.approx(0.815, abs=5e-4)  # only one criterion scored
    assert by["relevance"] is None  # nothing scored: undefined, not 0


def test_alpha_perfect_agreement_is_one_and_undefined_cases_are_none() -> None:
    assert stats.krippendorff_alpha(np.array([[1, 3, 5, 2], [1, 3, 5, 2]])) == pytest.approx(1.0)
    assert stats.krippendorff_alpha(np.array([[4, 4, 4], [4, 4, 4]])) is None  # no variation: 0/0
    assert stats.krippendorff_alpha(np.array([[1, 2, 3]])) is None  # one rater
    assert stats.krippendorff_alpha(np.array([[1, NAN], [NAN, 2]])) is None  # no pairable unit


def test_alpha_pools_criteria_for_overall() -> None:
    a = ratings_from_matrix([[1, 3, 5], [1, 3, 5]], "coherence")
    b = ratings_from_matrix([[2, 4, 1], [5, 1, 2]], "relevance")
    by = stats.alpha_by_criterion(a + b)
    assert by["coherence"] == pytest.approx(1.0)
    assert by["relevance"] < 0
    assert by["relevance"] < by["overall"] < 1.0


def test_weighted_kappa_hand_computed() -> None:
    assert stats.weighted_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    # O = one count in each of (1,1),(1,2),(2,1),(2,2); E = outer(2,2)/4 = 1 per cell:
    # sum w*O = 2, sum w*E = 2, so kappa = 1 - 2/2 = 0.
    assert stats.weighted_kappa([1, 1, 2, 2], [1, 2, 1, 2]) == pytest.approx(0.0)
    # Swapped pair: sum w*O = 2, E = 0.5 per cell, sum w*E = 1, kappa = 1 - 2/1 = -1.
    assert stats.weighted_kappa([1, 2], [2, 1]) == pytest.approx(-1.0)
    # Quadratic weights: a near miss costs less than a far miss.
    near = stats.weighted_kappa([1, 2, 3, 4, 5], [2, 2, 3, 4, 5])
    far = stats.weighted_kappa([1, 2, 3, 4, 5], [5, 2, 3, 4, 5])
    assert 0 < far < near < 1
    assert stats.weighted_kappa([3, 3], [3, 3]) is None  # no variation: undefined
    assert stats.weighted_kappa([3], [3]) is None


def test_kappa_by_pair_uses_only_items_both_scored() -> None:
    r = ratings_from_matrix([[1, 2, 3, 4], [1, 2, 3, NAN], [5, 5, 1, 1]])
    pairs = stats.kappa_by_pair(r)
    assert set(pairs) == {"r0 vs r1", "r0 vs r2", "r1 vs r2"}
    assert pairs["r0 vs r1"]["n_items"] == 3
    assert pairs["r0 vs r1"]["coherence"] == pytest.approx(1.0)
    assert pairs["r0 vs r1"]["overall"] == pytest.approx(1.0)
    assert pairs["r0 vs r2"]["coherence"] < 0
    assert pairs["r0 vs r1"]["relevance"] is None


def test_system_scores_mean_and_paper_scale() -> None:
    r = [
        Rating("ann", 1, "c1", "A", "coherence", 4),
        Rating("ann", 2, "c2", "A", "coherence", 5),
        Rating("bob", 1, "c1", "A", "coherence", 2),
        Rating("bob", 2, "c2", "A", "coherence", 3),
        Rating("ann", 1, "c3", "B", "coherence", 1),
    ]
    s = stats.system_scores(r, n_cases=2)
    assert s["A"]["coherence"] == {"mean": 3.5, "n": 4, "raters": 2, "paper_scale": 7.0, "complete": True}
    assert s["B"]["coherence"]["paper_scale"] == 1.0
    assert s["B"]["coherence"]["complete"] is False


def test_spearman_and_rouge_correlation() -> None:
    rho, p, n = stats.spearman([1, 2, 3, 4], [10, 20, 30, 40])
    assert (rho, n) == (pytest.approx(1.0), 4) and p is not None
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert stats.spearman([1, 2], [1, 2]) == (None, None, 2)
    assert stats.spearman([2, 2, 2], [1, 2, 3])[0] is None
    # Two candidates per case; within every case the better-scored one has the higher ROUGE-L.
    r = [Rating("a", i // 2, f"c{i}", "S", "relevance", s) for i, s in enumerate([1, 2, 2, 3, 3, 4, 4, 5])]
    r.append(Rating("a", 9, "ref", "reference", "relevance", 5))  # no ROUGE: excluded
    rouge = {f"c{i}": v for i, v in enumerate([0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.9])}
    corr = stats.rouge_correlation(r, rouge)
    assert corr["relevance"]["rho"] > 0.95 and corr["relevance"]["n"] == 8
    assert corr["relevance"]["p"] < 0.1  # 1 / 2**4 at best: 4 cases of two
    assert corr["relevance"]["n_cases"] == 4 and corr["overall"]["n"] == 8
    assert corr["coherence"]["rho"] is None and corr["coherence"]["n"] == 0


def _clustered(within: str, n_cases: int = 8) -> list[Rating]:
    """Two candidates per case; case k is easy or hard for both (scores k, k+1 and ROUGE-L near k/10).
    ``within``: "same" (higher ROUGE-L, higher score) or "alternate" (the order flips case by case)."""
    out = []
    for k in range(n_cases):
        flip = within == "alternate" and k % 2
        for j in range(2):
            out.append(Rating("a", k, f"c{k}-{j}", "S", "relevance", 1 + k // 2 + (j if not flip else 1 - j)))
    return out


def test_rouge_correlation_treats_candidates_of_a_case_as_one_cluster() -> None:
    """Easy cases get high scores and high ROUGE-L for every candidate: the naive Spearman p over
    candidates is tiny though ROUGE-L says nothing about which answer to a case is better. The
    test permutes within cases, so only the within-case ordering counts."""
    rouge = {f"c{k}-{j}": k / 10 + j / 100 for k in range(8) for j in range(2)}
    flat = _clustered("alternate")
    naive = stats.spearman([float(r.score) for r in flat], [rouge[r.candidate] for r in flat])
    assert naive[0] > 0.85 and naive[1] < 1e-4  # the mistake: 16 "independent" points
    corr = stats.rouge_correlation(flat, rouge)["relevance"]
    assert corr["rho"] == pytest.approx(naive[0]) and corr["p"] > 0.2 and corr["n_cases"] == 8
    assert "within cases" in corr["test"]
    low, high = corr["ci95"]  # case-level bootstrap of rho
    assert low <= corr["rho"] <= high
    agree = stats.rouge_correlation(_clustered("same"), rouge)["relevance"]
    assert agree["p"] < 0.02  # 2 / 2**8 at best: every case agrees
    one_per_case = [Rating("a", k, f"c{k}-0", "S", "relevance", 1 + k % 5) for k in range(8)]
    single = stats.rouge_correlation(one_per_case, rouge)["relevance"]
    assert single["rho"] is not None and single["p"] is None  # no case with two candidates: nothing to test
