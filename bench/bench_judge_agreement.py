"""Issue #30: the independent reader (radllama.evaluate.judge) against our labeller, Cohen's kappa per observation.

    python bench/bench_judge_agreement.py --data /tmp/judge-openi [--json out.json] [--disagreements d.jsonl]
        [--no-write]

Both read the same reference texts of the OpenI validation split (impressions: the headline; findings as a
second, larger sample) and, for the record, train (where both readers' rules were refined: in sample). Never
test. Per CheXpert observation: Cohen's kappa (scikit-learn) of *positive* against anything else, the
positives on each side, the 2x2 confusion counts (both / labeller only / reader only / neither), and a second
kappa where uncertain counts as stated (positive or uncertain, both sides). Target (issue #30): kappa >= 0.8
on the CheXpert-5 (validation impressions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TITLE = "Independent reader vs our labeller: Cohen's kappa (bench_judge_agreement.py)"
TARGET = 0.8
SAMPLES = (("validation", "impression"), ("validation", "findings"), ("train", "impression"))


def read_split(data: Path, name: str) -> list[dict]:
    if name == "test":
        raise SystemExit("bench_judge_agreement reads train and validation only: test stays unread")
    with open(data / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _kappa(a: list[bool], b: list[bool]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return None  # one class on both sides: kappa is undefined
    return float(cohen_kappa_score(a, b))


def agreement(texts: list[str]) -> tuple[dict, list[dict], dict]:
    """Per-observation agreement of the two readers on ``texts``; the disagreements; seconds per reader."""
    from radllama.evaluate import judge
    from radllama.labeller import FINDINGS, PRESENT, UNCERTAIN, label_report

    t0 = time.perf_counter()
    ours = [label_report(t) for t in texts]
    t1 = time.perf_counter()
    theirs = [judge.labels_chexpert(t) for t in texts]
    t2 = time.perf_counter()
    rows, disagreements = {}, []
    for obs in FINDINGS:
        a = [o[obs] == PRESENT for o in ours]
        b = [j[obs] == judge.POSITIVE for j in theirs]
        a2 = [o[obs] in (PRESENT, UNCERTAIN) for o in ours]
        b2 = [j[obs] in (judge.POSITIVE, judge.UNCERTAIN_LABEL) for j in theirs]
        rows[obs] = {
            "kappa": _kappa(a, b),
            "kappa_stated": _kappa(a2, b2),
            "labeller_positives": sum(a),
            "reader_positives": sum(b),
            "both": sum(x and y for x, y in zip(a, b, strict=True)),
            "labeller_only": sum(x and not y for x, y in zip(a, b, strict=True)),
            "reader_only": sum(y and not x for x, y in zip(a, b, strict=True)),
            "neither": sum(not x and not y for x, y in zip(a, b, strict=True)),
        }
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                disagreements.append(
                    {"observation": obs, "labeller": ours[i][obs], "reader": theirs[i][obs], "text": texts[i]}
                )
    return rows, disagreements, {"labeller_s": t1 - t0, "reader_s": t2 - t1}


def table(results: dict[str, dict]) -> str:
    from radllama.labeller import COMPETITION5

    names = list(results)
    head = "| observation | " + " | ".join(f"{n}: κ (κ stated) · labeller+ / reader+ / both" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    first = results[names[0]]["observations"]
    for obs in first:
        cells = []
        for n in names:
            r = results[n]["observations"][obs]
            k = "–" if r["kappa"] is None else f"{r['kappa']:.3f}"
            ks = "–" if r["kappa_stated"] is None else f"{r['kappa_stated']:.3f}"
            cells.append(f"{k} ({ks}) · {r['labeller_positives']} / {r['reader_positives']} / {r['both']}")
        star = " **(5)**" if obs in COMPETITION5 else ""
        lines.append(f"| {obs}{star} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data/openi"))
    parser.add_argument("--json", type=Path, default=None, help="write the full result here")
    parser.add_argument("--disagreements", type=Path, default=None, help="write every disagreement here (JSONL)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    from _report import publish

    from radllama.evaluate import judge
    from radllama.labeller import COMPETITION5, rules_digest

    t0 = time.perf_counter()
    judge.read("Warm-up.")
    load_s = time.perf_counter() - t0
    splits = {name: read_split(args.data, name) for name in {s for s, _ in SAMPLES}}
    results, all_disagreements = {}, []
    for split, field in SAMPLES:
        texts = [r.get(field) or "" for r in splits[split]]
        rows, dis, seconds = agreement(texts)
        key = f"{split} {field}{'' if field.endswith('s') else 's'} (n={len(texts)})"
        results[key] = {"observations": rows, "n": len(texts), **seconds}
        all_disagreements += [{"sample": key, **d} for d in dis]
    headline = results[next(iter(results))]["observations"]
    met = all(headline[o]["kappa"] is not None and headline[o]["kappa"] >= TARGET for o in COMPETITION5)
    out = {
        "reader_digest": judge.reader_digest(),
        "labeller_rules_digest": rules_digest(),
        "reader_first_load_s": round(load_s, 3),
        "target": {"kappa_min_chexpert5": TARGET, "met_on_validation_impressions": met},
        "samples": results,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    if args.disagreements:
        with open(args.disagreements, "w", encoding="utf-8") as f:
            for d in all_disagreements:
                f.write(json.dumps(d) + "\n")
    first = results[next(iter(results))]
    note = (
        f"Independent reader digest `{judge.reader_digest()[:16]}` (our labeller's rules: `{rules_digest()}`). "
        "Kappa of *positive* vs "
        "anything else (in brackets: positive or uncertain vs the rest); then the positives of the labeller, of "
        "the reader, and of both. Target: κ ≥ 0.8 on the CheXpert-5 (**(5)**) on validation impressions: "
        f"**{'met' if met else 'not met'}**. Both rule sets were refined on train and validation (in sample); "
        f"test is not read. Reader: first load {load_s:.1f} s, "
        f"{first['reader_s'] / max(first['n'], 1) * 1000:.1f} ms per impression (labeller "
        f"{first['labeller_s'] / max(first['n'], 1) * 1000:.2f} ms)."
    )
    publish(TITLE, note, table(results), write=not args.no_write)


if __name__ == "__main__":
    main()
