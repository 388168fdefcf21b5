import numpy as np
import pytest

from radllama.evaluate.stats import bootstrap_ci, bootstrap_statistic_ci, paired_bootstrap


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


def test_paired_bootstrap_detects_clear_difference() -> None:
    rng = np.random.default_rng(2)
    b = rng.uniform(0, 1, size=100)
    a = b + 0.1 + rng.normal(0, 0.02, size=100)
    out = paired_bootstrap(a, b)
    assert out["mean_diff"] == pytest.approx(0.1, abs=0.01)
    assert out["ci95"][0] > 0
    assert out["p_value"] < 0.01
    assert out["n"] == 100


def test_paired_bootstrap_no_difference() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, size=100)
    b = a + rng.normal(0, 0.05, size=100)
    b = b - (b - a).mean()  # exact zero mean difference
    out = paired_bootstrap(a, b)
    assert out["ci95"][0] < 0 < out["ci95"][1]
    assert out["p_value"] > 0.5
    assert paired_bootstrap(a, a)["p_value"] == 1.0


def test_paired_bootstrap_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])
