"""Statistics over per-case scores: bootstrap CIs and paired system tests.

CIs are percentile bootstraps, vectorised with numpy (one index matrix per call). The paired
test between two systems is a permutation test under the null that the systems are
exchangeable case by case (``scipy.stats.permutation_test``, ``permutation_type="samples"``:
each resample swaps the two systems' outputs on a random subset of cases). Everything is
seeded so that every report is reproducible.

A report runs many paired tests at once (metrics x subsets x systems), so its p-values are also
given Holm-adjusted over that whole family (:func:`holm`), which holds the chance of any false
"significant" difference at the level; scipy has no Holm and one step-down line does not justify
statsmodels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
TEST_NAME = "paired permutation test (scipy.stats.permutation_test, samples), two-sided; CI: percentile bootstrap"


HOLM_NOTE = "p (Holm): Holm-adjusted over all {k} paired tests of this report (family-wise error rate)"


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (each >= its raw p, capped at 1).

    The i-th smallest of m p-values is multiplied by m - i (i from 0), and the products are made
    non-decreasing in that order, so a test is rejected at level a exactly when Holm's procedure
    rejects it.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


def resample_indices(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Seeded bootstrap index matrix of shape (resamples, n).

    Kept rather than ``scipy.stats.bootstrap`` (issue #22): one matrix serves the mean CIs, the
    corpus-level clinical F1s (resample cases, recount) and the paired differences, so every figure
    of a report is computed on the same resampled cases; scipy's percentile method draws the same
    indices from the same seed and gives identical intervals, but was no faster, and refuses a
    single case (BENCHMARKS.md, "Bootstrap CIs: ours vs scipy.stats.bootstrap").
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``.

    Returns ``(nan, nan)`` for an empty array and ``(x, x)`` for a single value.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    means = arr[resample_indices(arr.size, resamples, seed)].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def bootstrap_statistic_ci(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of any statistic over cases.

    Args:
        n: number of cases.
        statistic: maps an index matrix of shape (resamples, n) to (resamples,) values;
            used for corpus-level scores such as micro F1 that are not plain means.
    """
    if n == 0:
        return (float("nan"), float("nan"))
    stats = np.asarray(statistic(resample_indices(n, resamples, seed)), dtype=float)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(stats, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def _permutation_p(x: np.ndarray, y: np.ndarray, statistic: Callable, resamples: int, seed: int) -> float:
    """Two-sided p of a paired permutation test (exact when 2**n <= resamples)."""
    from scipy.stats import permutation_test

    result = permutation_test(
        (x, y),
        statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="two-sided",
        axis=0,
        random_state=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def paired_permutation(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> dict[str, float | list[float] | int | str]:
    """Paired test of system A vs B on per-case scores (mean difference A - B).

    The p-value comes from a sign-flip permutation test of the paired differences (a real
    test under the null of no difference); the CI is a percentile bootstrap of the mean
    difference.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError("paired test needs score arrays over the same cases")
    if xa.size == 0:
        return {"mean_diff": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": 1.0, "n": 0}
    diff = xa - xb
    low, high = bootstrap_ci(diff, resamples, seed, level)
    p = 1.0 if np.all(diff == 0) else _permutation_p(xa, xb, _mean_difference, resamples, seed)
    return {"mean_diff": float(diff.mean()), "ci95": [low, high], "p_value": p, "n": int(xa.size), "test": TEST_NAME}


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _micro_f1_of_sums(counts: np.ndarray, axis: int) -> np.ndarray:
    # counts: (..., 3, n) after scipy moves the case axis last: rows tp, fp, fn.
    tp, fp, fn = (np.take(counts, i, axis=-2).sum(axis=axis) for i in range(3))
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _micro_f1_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return _micro_f1_of_sums(x, axis) - _micro_f1_of_sums(y, axis)


def paired_permutation_f1(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> dict[str, float | list[float] | int | str]:
    """Paired test of a corpus-level micro F1 (A - B), from per-case counts.

    Args:
        counts_a, counts_b: arrays (cases, 3) of each case's TP, FP, FN summed over the
            observations, for system A and B on the same cases.

    The p-value is a paired permutation test (swap A and B on random cases, recount,
    re-score); the CI a percentile bootstrap of the difference (resample cases, recount).
    """
    xa, xb = np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 2 or xa.shape[1] != 3:
        raise ValueError("paired F1 test needs (cases, 3) TP/FP/FN arrays over the same cases")
    n = xa.shape[0]
    if n == 0:
        return {"mean_diff": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": 1.0, "n": 0}
    point = float(_micro_f1_difference(xa.T, xb.T, axis=-1))
    idx = resample_indices(n, resamples, seed)
    # (resamples, n, 3) -> (resamples, 3, n): the layout the statistic reads.
    boot = _micro_f1_difference(xa[idx].transpose(0, 2, 1), xb[idx].transpose(0, 2, 1), axis=-1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    p = 1.0 if np.array_equal(xa, xb) else _permutation_p(xa, xb, _micro_f1_difference, resamples, seed)
    return {"mean_diff": point, "ci95": [float(low), float(high)], "p_value": p, "n": int(n), "test": TEST_NAME}
