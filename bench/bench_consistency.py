"""Issue #20: the consistency check's false flags on OpenI references and the omissions it catches.

    python bench/bench_consistency.py --data /tmp/openi-data [--test] [--no-write]

1. False flags: a radiologist's own impression is taken as consistent with its findings, so every
   reference the check flags (an omitted or unsupported acute finding) is a false flag (an upper bound:
   some references do leave out what their findings state). The rules (:mod:`radllama.consistency`: acute
   types, equivalence groups, minor-finding qualifiers) were tuned on train + validation only; ``--test``
   adds the test split, measured once, after the rules were fixed. Wrong sides are counted beside.
2. Omissions caught: the faithfulness benchmark's cases (:mod:`radllama.evaluate.faithfulness`; dev
   edition from train, held-out edition from validation) answered by "No acute cardiopulmonary
   abnormality.": a critical case counts when the check reports its finding omitted; a sided case, answered
   by its own findings with left and right swapped, when the check reports the wrong side; normal and
   negation cases must raise no flag.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.consistency import check, flagged  # noqa: E402
from radllama.evaluate.faithfulness import TYPE_OBSERVATION, build_benchmark  # noqa: E402
from radllama.evaluate.faithfulness_cases import SOURCE_SPLIT  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Issue #20: consistency check, false flags on OpenI references (bench_consistency.py)"
TARGET, TARGET_CAUGHT = 0.05, 0.95
NO_ACUTE = "No acute cardiopulmonary abnormality."
_SIDE_RE = re.compile(r"\b(left|right)\b", re.I)


def _swap_sides(text: str) -> str:
    def other(m: re.Match[str]) -> str:
        word = "right" if m.group(1).lower() == "left" else "left"
        return word.capitalize() if m.group(1)[0].isupper() else word

    return _SIDE_RE.sub(other, text)


def caught(cases: list[dict]) -> dict:
    """Omissions and wrong sides the check reports on benchmark cases, and its flags on normal/negation cases."""
    critical = [c for c in cases if c["kind"] == "critical"]
    omitted = [TYPE_OBSERVATION[c["finding"]] in check(c["findings"], NO_ACUTE)["omitted"] for c in critical]
    sided = [c for c in critical if c["side"]]
    sides = [
        TYPE_OBSERVATION[c["finding"]] in check(c["findings"], _swap_sides(c["findings"]))["side_mismatch"]
        for c in sided
    ]
    missed = Counter(c["finding"] for c, hit in zip(critical, omitted, strict=True) if not hit)
    quiet = [c for c in cases if c["kind"] in ("normal", "negation")]
    flags = sum(flagged(check(c["findings"], NO_ACUTE)) for c in quiet)
    return {"n": len(critical), "omitted": sum(omitted), "sided": len(sided), "sides": sum(sides),
            "missed": missed, "quiet": len(quiet), "flags": flags}  # fmt: skip


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
    editions = {
        ed: caught(build_benchmark(ed, read_jsonl(args.data / f"{SOURCE_SPLIT[ed]}.jsonl"))) for ed in SOURCE_SPLIT
    }
    rows += [
        "",
        f'Omissions caught on the faithfulness benchmark (impression: "{NO_ACUTE}"; target ≥ {TARGET_CAUGHT:.0%}):',
        "",
        "| edition (source split) | critical cases | omission flagged | sided cases | wrong side flagged "
        "| flags on normal + negation cases | missed, by type |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for ed, r in editions.items():
        missed = ", ".join(f"{k} {v}" for k, v in r["missed"].most_common()) or "none"
        rows.append(
            f"| {ed} ({SOURCE_SPLIT[ed]}) | {r['n']} | {r['omitted'] / r['n']:.3f} | {r['sided']} "
            f"| {r['sides'] / r['sided']:.3f} | {r['flags']} of {r['quiet']} | {missed} |"
        )
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
        f"only; test was measured once, with the rules fixed.{verdict} Time: {seconds:.1f} s for {total} reports. "
        "The check misses, by design, findings its minor qualifiers exempt (a stable, mild or borderline "
        "cardiomegaly, minimal atelectasis): references leave those out of the impression."
    )
    publish(TITLE, note, "\n".join(rows), write=not args.no_write)


if __name__ == "__main__":
    main()
