import numpy as np
import pytest

from radllama.evaluate.stats import (
    bootstrap_ci,
    bootstrap_statistic_ci,
    holm,
    paired_permutation,
    paired_permutation_f1,
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
    values = np.arange(50, dtype=float)
    assert bootstrap_statistic_ci(50, lambda idx: values[idx].mean(axis=1)) == bootstrap_ci(values)


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
