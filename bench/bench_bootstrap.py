"""Bootstrap CIs: ours (radllama.evaluate.stats, one seeded index matrix in numpy) beside
``scipy.stats.bootstrap`` (percentile method, vectorised), for the 95% CI of a mean.

    python bench/bench_bootstrap.py [--cases 576 20000] [--resamples 1000] [--no-write]

Times each on uniform per-case scores (best of 5) and shows both intervals; the question of
issue #22 is whether scipy does the job as well and as fast, so that ours can go.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import __version__ as scipy_version
from scipy.stats import bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.evaluate.stats import bootstrap_ci  # noqa: E402

TITLE = "Bootstrap CIs: ours vs scipy.stats.bootstrap (bench_bootstrap.py)"


def best_of(fn, k: int = 5) -> tuple[object, float]:  # noqa: ANN001
    times = []
    for _ in range(k):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return out, min(times)


def scipy_ci(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    res = bootstrap((values,), np.mean, n_resamples=resamples, method="percentile", vectorized=True, axis=-1,
                    random_state=np.random.default_rng(seed))  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[576, 20_000])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = [
        "| cases | ours: ms | ours: 95% CI | scipy: ms | scipy: 95% CI | scipy / ours |",
        "|---:|---:|---|---:|---|---:|",
    ]
    for n in args.cases:
        values = np.random.default_rng(0).uniform(size=n)
        ours, t_ours = best_of(lambda v=values: bootstrap_ci(v, args.resamples, 0))
        theirs, t_scipy = best_of(lambda v=values: scipy_ci(v, args.resamples, 0))
        lines.append(f"| {n:,} | {t_ours * 1e3:.1f} | [{ours[0]:.4f}, {ours[1]:.4f}] | {t_scipy * 1e3:.1f} | "
                     f"[{theirs[0]:.4f}, {theirs[1]:.4f}] | {t_scipy / t_ours:.2f} |")  # fmt: skip
    try:
        one = scipy_ci(np.array([0.3]), 100, 0)
        single = f"one case: scipy gives {one}"
    except ValueError as exc:
        single = f"one case: scipy raises ValueError ({str(exc).rstrip('.')}); ours returns (x, x)"
    note = (
        f"One system's CI of a mean per-case score, {args.resamples} resamples, best of 5; scipy {scipy_version} "
        f"(`method='percentile', vectorized=True`). {single}."
    )
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
