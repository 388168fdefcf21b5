import tracemalloc

import numpy as np
import pytest
from scipy.stats import permutation_test

from radllama.evaluate.stats import (
    bootstrap_ci,
    bootstrap_statistics,
    holm,
    paired_permutation,
    paired_permutation_f1,
    percentile_ci,
    resample_chunks,
)


def test_ci_contains_mean_and_is_seeded() -> None:
    values = np.random.default_rng(1).normal(0.5, 0.1, size=200)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    assert high - low < 0.05  # ~ 2 * 1.96 * 0.1 / sqrt(200) = 0.028
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci(values, seed=7) != (low, high)


def test_ci_edge_cases() -> None:
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([0.3]) == (pytest.approx(0.3), pytest.approx(0.3))


def test_statistic_ci_matches_mean_ci_for_mean() -> None:
    # Any statistic's interval (as metrics.py builds one) is the mean's for the mean.
    values = np.arange(50, dtype=float)
    means = bootstrap_statistics(50, lambda idx: values[idx].mean(axis=1))
    assert percentile_ci(means, skip_nan=True) == bootstrap_ci(values)


def test_paired_permutation_detects_clear_difference() -> None:
    rng = np.random.default_rng(2)
    b = rng.uniform(0, 1, size=100)
    a = b + 0.1 + rng.normal(0, 0.02, size=100)
    out = paired_permutation(a, b)
    assert out["mean_diff"] == pytest.approx(0.1, abs=0.01)
    assert out["ci95"][0] > 0
    assert out["p_value"] < 0.01
    assert out["n"] == 100


def test_paired_permutation_no_difference() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, size=100)
    b = a + rng.normal(0, 0.05, size=100)
    b = b - (b - a).mean()  # exact zero mean difference
    out = paired_permutation(a, b)
    assert out["ci95"][0] < 0 < out["ci95"][1]
    assert out["p_value"] > 0.5
    assert paired_permutation(a, a)["p_value"] == 1.0


def test_paired_permutation_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        paired_permutation([1, 2], [1])


def test_paired_permutation_is_a_test_under_the_null() -> None:
    # Under the null (A and B exchangeable case by case) p is roughly uniform: about 5% of
    # seeds fall below 0.05; an inverted bootstrap CI would not be calibrated like this.
    rng = np.random.default_rng(4)
    ps = []
    for _ in range(100):
        a, b = rng.uniform(0, 1, size=(2, 40))
        ps.append(paired_permutation(a, b, resamples=200, seed=int(rng.integers(1 << 30)))["p_value"])
    assert 0.0 <= np.mean(np.array(ps) < 0.05) <= 0.12
    assert 0.35 < np.mean(ps) < 0.65


def test_paired_permutation_small_n_is_exact() -> None:
    # 5 cases, all A > B: the exact two-sided sign-flip p is 2 / 2**5.
    out = paired_permutation([1, 1, 1, 1, 1], [0, 0, 0, 0, 0], resamples=1000)
    assert out["p_value"] == pytest.approx(2 / 32)


def test_paired_permutation_f1_separates_and_ties() -> None:
    rng = np.random.default_rng(5)
    good = np.stack([rng.integers(1, 3, 300), np.zeros(300), np.zeros(300)], axis=1)  # all TP
    bad = np.stack([np.zeros(300), np.zeros(300), good[:, 0]], axis=1)  # every finding missed
    out = paired_permutation_f1(good, bad, resamples=500)
    assert out["mean_diff"] == pytest.approx(1.0) and out["p_value"] < 0.01 and out["ci95"][0] > 0.9
    assert paired_permutation_f1(good, good)["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_permutation_f1(good, bad[:, :2])


def test_holm_adjusts_a_family_step_down() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04; then the running max.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9, 0.8]) == pytest.approx([1.0, 1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02]) and len(holm([])) == 0
    p = np.random.default_rng(0).uniform(size=50)
    adjusted = holm(p)
    assert np.all(adjusted >= p) and np.all(adjusted <= np.minimum(1, p * 50) + 1e-12)


# --- issue #21: resamples in chunks, the same figures as one big draw, in bounded memory ---


def _micro_f1(totals: np.ndarray) -> np.ndarray:
    tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def test_resample_chunks_concatenate_to_one_big_draw() -> None:
    big = np.random.default_rng(3).integers(0, 37, size=(101, 37))
    for rows in (2, 7, 100, 101, 500):
        assert np.array_equal(np.concatenate(list(resample_chunks(37, 101, 3, rows))), big)
    # A one-row remainder joins the chunk before it (a lone row would sum in another order).
    assert [len(chunk) for chunk in resample_chunks(37, 101, 3, 10)] == [10] * 9 + [11]


def test_chunked_bootstraps_equal_the_one_big_draw() -> None:
    # The reference is the computation before chunking: one (resamples, n) index matrix.
    rng = np.random.default_rng(6)
    n, resamples = 400, 300
    values = rng.uniform(size=n)
    counts_a, counts_b = rng.integers(0, 3, size=(2, n, 3)).astype(float)
    idx = np.random.default_rng(0).integers(0, n, size=(resamples, n))
    alpha = (1.0 - 0.95) / 2.0  # 0.025000000000000022, as the CIs have always computed it
    mean_ci = tuple(float(q) for q in np.quantile(values[idx].mean(axis=1), [alpha, 1.0 - alpha]))
    f1_boot = _micro_f1(counts_a[idx].sum(1)) - _micro_f1(counts_b[idx].sum(1))
    f1_ci = [float(q) for q in np.quantile(f1_boot, [alpha, 1.0 - alpha])]
    for rows in (2, 7, 64, None):  # 150, 43, 5 and 1 chunks
        assert bootstrap_ci(values, resamples, 0, rows=rows) == mean_ci
        assert paired_permutation(values, values[::-1], resamples, 0, rows=rows)["ci95"] == list(
            bootstrap_ci(values - values[::-1], resamples, 0)
        )
        assert paired_permutation_f1(counts_a, counts_b, resamples, 0, rows=rows)["ci95"] == f1_ci


def _scipy_p(a: np.ndarray, b: np.ndarray, statistic, resamples: int, seed: int) -> float:
    result = permutation_test((a, b), statistic, permutation_type="samples", vectorized=True, n_resamples=resamples,
                              alternative="two-sided", axis=0, random_state=np.random.default_rng(seed))  # fmt: skip
    return float(min(1.0, result.pvalue))


@pytest.mark.parametrize("n", [5, 9, 40, 333])
def test_permutation_p_values_are_scipys(n: int) -> None:
    # Our chunked sign flips against scipy.stats.permutation_test itself (exact for n = 5, 9).
    rng = np.random.default_rng(n)
    for seed in range(3):
        a = rng.uniform(size=n)
        b = a + rng.normal(0.02, 0.3, size=n)  # p-values spread over (0, 1), not stuck at a bound
        expected = _scipy_p(a, b, lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis), 500, seed)
        ca, cb = rng.integers(0, 3, size=(2, n, 3)).astype(float)
        # scipy hands the statistic (..., 3, n): TP, FP, FN rows, cases along ``axis``.
        expected_f1 = _scipy_p(ca, cb, lambda x, y, axis: _micro_f1(x.sum(axis)) - _micro_f1(y.sum(axis)), 500, seed)
        for rows in (2, 7, None):
            assert paired_permutation(a, b, 500, seed, rows=rows)["p_value"] == expected
            assert paired_permutation_f1(ca, cb, 500, seed, rows=rows)["p_value"] == expected_f1


def test_bootstrap_and_permutation_memory_is_bounded() -> None:
    # 200,000 cases x 200 resamples, traced peak of the three calls below (same results both ways):
    # 66 MB in chunks; 6,861 MB before issue #21 (one index matrix, scipy's unbatched permutation test).
    n, resamples = 200_000, 200
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(2, n))
    ca, cb = rng.integers(0, 3, size=(2, n, 3)).astype(float)
    tracemalloc.start()
    try:
        bootstrap_ci(a, resamples)
        paired_permutation(a, b, resamples)
        paired_permutation_f1(ca, cb, resamples)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150e6
