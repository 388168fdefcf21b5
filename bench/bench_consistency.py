"""Issue #20: false flags of the consistency check on OpenI *reference* impressions.

    python bench/bench_consistency.py --data /tmp/openi-data [--test] [--no-write]

A radiologist's own impression is taken as consistent with its findings, so every reference the check
flags (an omitted or unsupported acute finding) is a false flag (an upper bound: some references do leave
out what their findings state). The rules (:mod:`radllama.consistency`: acute types, equivalence groups,
minor-finding qualifiers) were tuned on train + validation only; ``--test`` adds the test split, which is
measured once, after the rules were fixed. Wrong sides are counted beside, not in, the false flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.consistency import check  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Issue #20: consistency check, false flags on OpenI references (bench_consistency.py)"
TARGET = 0.05


def measure(records: list[dict]) -> dict:
    """Flag rates and the observations behind them over one set of reference reports."""
    counts: Counter[str] = Counter()
    flagged = sides = 0
    for r in records:
        out = check(r["findings"], r["impression"])
        flagged += bool(out["omitted"] or out["unsupported"])
        sides += bool(out["side_mismatch"])
        counts.update(f"{key} {obs}" for key in ("omitted", "unsupported") for obs in out[key])
    n = len(records)
    return {"n": n, "flagged": flagged, "rate": flagged / n, "sides": sides, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with {train,validation,test}.jsonl")
    parser.add_argument("--test", action="store_true", help="also measure the test split (once, at the end)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    sets = {"train + validation (tuning)": ["train", "validation"]}
    if args.test:
        sets["test (held out)"] = ["test"]
    started = time.perf_counter()
    results = {
        name: measure([r for s in splits for r in read_jsonl(args.data / f"{s}.jsonl")])
        for name, splits in sets.items()
    }
    seconds = time.perf_counter() - started
    rows = [
        "| references | n | flagged (omitted or unsupported) | rate | wrong side | most frequent flags |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        top = ", ".join(f"{k} {v}" for k, v in r["counts"].most_common(5))
        rows.append(f"| {name} | {r['n']} | {r['flagged']} | {r['rate']:.1%} | {r['sides']} | {top} |")
    verdict = ""
    if "test (held out)" in results:
        rate = results["test (held out)"]["rate"]
        met = "met" if rate <= TARGET else "not met"
        verdict = f" Target: ≤ {TARGET:.0%} false flags on test: **{met}** ({rate:.1%})."
    total = sum(r["n"] for r in results.values())
    note = (
        "Every OpenI reference impression checked against its own findings (`radllama.consistency.check`); a flag "
        "on a radiologist's impression counts as a false flag (an upper bound: some references do omit a stated "
        "finding). Acute types, equivalence groups and minor-finding qualifiers were tuned on train + validation "
        f"only; test was measured once, with the rules fixed.{verdict} Time: {seconds:.1f} s for {total} reports."
    )
    publish(TITLE, note, "\n".join(rows), write=not args.no_write)


if __name__ == "__main__":
    main()
