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
    r = [Rating("a", i, f"c{i}", "S", "relevance", s) for i, s in enumerate([1, 2, 3, 5])]
    r.append(Rating("a", 9, "ref", "reference", "relevance", 5))  # no ROUGE: excluded
    corr = stats.rouge_correlation(r, {"c0": 0.1, "c1": 0.2, "c2": 0.3, "c3": 0.9})
    assert corr["relevance"]["rho"] == pytest.approx(1.0) and corr["relevance"]["n"] == 4
    assert corr["overall"]["n"] == 4
    assert corr["coherence"] == {"rho": None, "p": None, "n": 0}
