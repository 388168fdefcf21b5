"""Bootstrap statistics over per-case scores: CIs of a mean and paired system tests.

Percentile bootstrap, vectorised with numpy (one index matrix per call), seeded so that
every report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0


def resample_indices(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Seeded bootstrap index matrix of shape (resamples, n)."""
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


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> dict[str, float | list[float] | int]:
    """Paired bootstrap test of system A vs B scored on the same cases.

    Returns the mean difference (A - B), its percentile CI, and a two-sided p-value: twice
    the smaller share of resampled differences on either side of zero (capped at 1), with
    the +1 correction so that p is never exactly 0 from a finite number of resamples.
    """
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError("paired bootstrap needs score arrays over the same cases")
    n = xa.size
    if n == 0:
        return {"mean_diff": float("nan"), "ci95": [float("nan"), float("nan")], "p_value": 1.0, "n": 0}
    diff = xa - xb
    boot = diff[resample_indices(n, resamples, seed)].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    if np.all(diff == 0):
        p = 1.0
    else:
        below = (np.sum(boot <= 0) + 1) / (resamples + 1)
        above = (np.sum(boot >= 0) + 1) / (resamples + 1)
        p = float(min(1.0, 2.0 * min(below, above)))
    return {"mean_diff": float(diff.mean()), "ci95": [float(low), float(high)], "p_value": p, "n": int(n)}
