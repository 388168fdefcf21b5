"""Statistics over per-case scores: bootstrap CIs and paired system tests.

CIs are percentile bootstraps, vectorised with numpy. The paired test between two systems is a
permutation test under the null that the systems are exchangeable case by case: each resample
swaps the two systems' outputs on a random subset of cases (``scipy.stats.permutation_test``'s
``permutation_type="samples"``). Everything is seeded so that every report is reproducible.

Memory is O(cases x chunk), not O(cases x resamples) (issue #21): resamples are drawn and
reduced a chunk of rows at a time (:data:`CHUNK_ELEMENTS` indices each) from one Generator, so
the chunks are exactly the rows one big draw would give and every figure is the same as when the
whole matrix was held. The permutation test is computed here rather than by scipy, whose paired
("samples") test loops in Python over the cases of every batch and, unbatched, holds
cases x resamples x 2 indices at once; it draws scipy's sign flips from the same
seed and sums in scipy's order, so its null distribution and p-values are scipy's bit for bit
(``tests/test_evaluate_stats.py`` compares them).

A report runs many paired tests at once (metrics x subsets x systems), so its p-values are also
given Holm-adjusted over that whole family (:func:`holm`), which holds the chance of any false
"significant" difference at the level; scipy has no Holm and one step-down line does not justify
statsmodels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
# Indices per chunk of resamples (16 MB as int64) whatever the number of cases: chunks of
# ~100 rows at 20,000 cases, 13 at 150,000, so Python's per-chunk cost stays small beside numpy's.
CHUNK_ELEMENTS = 1 << 21
# The test is scipy's (same draws, same p-values), computed here in chunks (see above).
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


def _row_chunks(resamples: int, n: int, rows: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of resamples: ``rows`` each (default :data:`CHUNK_ELEMENTS` // n, at least 2).

    A one-row remainder joins the chunk before it: the permutation null sums a one-row chunk in
    numpy's pairwise order rather than scipy's sequential one (see :func:`_permutation_p`).
    """
    rows = max(2, rows or CHUNK_ELEMENTS // max(n, 1))
    starts = list(range(0, resamples, rows))
    if len(starts) > 1 and resamples - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, [*starts[1:], resamples], strict=True))


def resample_chunks(
    n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, rows: int | None = None
) -> Iterator[np.ndarray]:
    """Seeded bootstrap indices, a chunk of rows (resamples) at a time, each of shape (rows, n).

    The chunks come from one Generator in order, so together they are exactly the matrix
    ``default_rng(seed).integers(0, n, size=(resamples, n))``; only one chunk is held at a time.

    Kept rather than ``scipy.stats.bootstrap`` (issue #22): one stream of indices serves the mean
    CIs, the corpus-level clinical F1s (resample cases, recount) and the paired differences, so every
    figure of a report is computed on the same resampled cases; scipy's percentile method draws the
    same indices from the same seed and gives identical intervals, but was no faster, and refuses a
    single case (BENCHMARKS.md, "Bootstrap CIs: ours vs scipy.stats.bootstrap").
    """
    rng = np.random.default_rng(seed)
    for start, stop in _row_chunks(resamples, n, rows):
        yield rng.integers(0, n, size=(stop - start, n))


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` cases is drawn in each resample of ``idx`` (rows, n), as floats.

    Sums over resampled cases are then one matrix product, ``resample_counts(idx, n) @ values``,
    equal to ``values[idx].sum(1)`` exactly when the values are integer counts (their float sums
    are exact in any order) and without the rows x n x columns gather.
    """
    rows = idx.shape[0]
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)


def bootstrap_statistics(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    rows: int | None = None,
) -> np.ndarray:
    """``statistic`` of every resample of ``n`` cases, computed chunk by chunk.

    Args:
        statistic: maps a chunk of indices (rows, n) to its values (rows,) or (rows, k): several
            figures can share one draw (as a report's means and clinical counts do).
        rows: resamples per chunk (default from :data:`CHUNK_ELEMENTS`); the result never depends on it.
    """
    chunks = [np.asarray(statistic(idx), dtype=float) for idx in resample_chunks(n, resamples, seed, rows)]
    return np.concatenate(chunks)


def percentile_ci(values: np.ndarray, level: float = 0.95, skip_nan: bool = False) -> tuple[float, float]:
    """The percentile interval of bootstrap values (``skip_nan``: of those that are not NaN)."""
    alpha = (1.0 - level) / 2.0
    low, high = (np.nanquantile if skip_nan else np.quantile)(values, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
    rows: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``.

    Returns ``(nan, nan)`` for an empty array and ``(x, x)`` for a single value.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    means = bootstrap_statistics(arr.size, lambda idx: arr[idx].mean(axis=1), resamples, seed, rows)
    return percentile_ci(means, level)


def _flip_chunks(n: int, resamples: int, seed: int, rows: int | None = None) -> tuple[Iterator[np.ndarray], bool]:
    """The swaps of a paired permutation test, (rows, n) booleans a chunk at a time, and whether exact.

    scipy's draws: with fewer than ``resamples`` patterns, all 2**n (one chunk, exact); otherwise
    ``Generator.permuted`` shuffles each case's pair with one 32-bit draw, swapping when its low bit
    is 0, case after case and resample after resample, from ``default_rng(seed)``.
    """
    if n < 63 and 1 << n <= resamples:
        patterns = np.arange(1 << n)[:, None] >> np.arange(n - 1, -1, -1)
        return iter([(patterns & 1).astype(bool)]), True
    rng = np.random.default_rng(seed)
    chunks = ((rng.integers(0, 1 << 32, size=(b - a, n), dtype=np.uint32) & 1) == 0
              for a, b in _row_chunks(resamples, n, rows))  # fmt: skip
    return chunks, False


def _permutation_p(
    n: int, observed: float, null: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int, rows: int | None
) -> float:
    """Two-sided p of a paired permutation test, as ``scipy.stats.permutation_test`` computes it.

    ``null`` maps a chunk of swaps (rows, n) to the statistic of each swapped resample. Exact when
    2**n <= resamples; otherwise (count + 1) / (resamples + 1) with scipy's tolerance for ties.
    """
    chunks, exact = _flip_chunks(n, resamples, seed, rows)
    values = np.concatenate([null(flips) for flips in chunks])
    adjustment = 0 if exact else 1
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = (np.count_nonzero(values <= observed + gamma) + adjustment) / (values.size + adjustment)
    greater = (np.count_nonzero(values >= observed - gamma) + adjustment) / (values.size + adjustment)
    return float(min(1.0, 2 * min(less, greater)))


def paired_permutation(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
    rows: int | None = None,
) -> dict[str, float | list[float] | int | str]:
    """Paired test of system A vs B on per-case scores (mean difference A - B).

    The p-value comes from a sign-flip permutation test of the paired differences (a real
    test under the null of no difference); the CI is a percentile bootstrap of the mean
    difference.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError("paired test needs score arrays over the same cases")
    n = xa.size
    if n == 0:
        return {"mean_diff": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": 1.0, "n": 0}
    diff = xa - xb
    low, high = bootstrap_ci(diff, resamples, seed, level, rows)

    def null(flips: np.ndarray) -> np.ndarray:
        # Cases down, resamples across (n, rows), summed down the cases: scipy's additions in
        # scipy's order (its batch is strided the same way), so the same floats.
        swapped = flips.T
        x = np.where(swapped, xb[:, None], xa[:, None]).sum(axis=0) / n
        y = np.where(swapped, xa[:, None], xb[:, None]).sum(axis=0) / n
        return x - y

    observed = float(np.mean(xa) - np.mean(xb))
    p = 1.0 if np.all(diff == 0) else _permutation_p(n, observed, null, resamples, seed, rows)
    return {"mean_diff": float(diff.mean()), "ci95": [low, high], "p_value": p, "n": int(n), "test": TEST_NAME}


def _micro_f1(totals: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts (..., 3): TP, FP, FN."""
    tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def paired_permutation_f1(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
    rows: int | None = None,
) -> dict[str, float | list[float] | int | str]:
    """Paired test of a corpus-level micro F1 (A - B), from per-case counts.

    Args:
        counts_a, counts_b: arrays (cases, 3) of each case's TP, FP, FN summed over the
            observations, for system A and B on the same cases.

    The p-value is a paired permutation test (swap A and B on random cases, recount,
    re-score); the CI a percentile bootstrap of the difference (resample cases, recount).
    Counts are integers, so every recount below is an exact float sum (any order).
    """
    xa, xb = np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 2 or xa.shape[1] != 3:
        raise ValueError("paired F1 test needs (cases, 3) TP/FP/FN arrays over the same cases")
    n = xa.shape[0]
    if n == 0:
        return {"mean_diff": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": 1.0, "n": 0}
    total_a, total = xa.sum(0), xa.sum(0) + xb.sum(0)
    point = float(_micro_f1(total_a) - _micro_f1(xb.sum(0)))

    def boot(idx: np.ndarray) -> np.ndarray:
        drawn = resample_counts(idx, n)
        return _micro_f1(drawn @ xa) - _micro_f1(drawn @ xb)

    def null(flips: np.ndarray) -> np.ndarray:
        a = total_a + flips.astype(float) @ (xb - xa)  # A's counts with the swapped cases taken from B
        return _micro_f1(a) - _micro_f1(total - a)

    low, high = percentile_ci(bootstrap_statistics(n, boot, resamples, seed, rows), level)
    p = 1.0 if np.array_equal(xa, xb) else _permutation_p(n, point, null, resamples, seed, rows)
    return {"mean_diff": point, "ci95": [low, high], "p_value": p, "n": int(n), "test": TEST_NAME}
