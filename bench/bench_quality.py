"""Quality target of issue #2: the demo's measured figures beside the target, into BENCHMARKS.md.

    radllama demo --out runs/demo && python bench/bench_quality.py runs/demo

Reads DIR/metrics.json (written by the demo) and DIR/report.md's stage times; writes nothing
that it did not read there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section, provenance  # noqa: E402

TARGET = {"rouge1": 0.68, "rouge2": 0.58, "rougeL": 0.67}
TUNED, RETRIEVAL = "radllama-mini-lora", "tfidf-retrieval"  # trained systems: names starting with TUNED
HEADLINE = "clinical_micro_f1"


def main(out: Path) -> str:
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    systems = metrics["systems"]
    rows = [
        "| system | subset | n | ROUGE-1 [95% CI] | ROUGE-2 | ROUGE-L | clinical micro-F1 |",
        "|---|---|---:|---|---|---|---|",
    ]
    for name, entry in systems.items():
        if "not_run" in entry:
            rows.append(f"| {name} | – | – | not run: {entry['not_run']} | | | |")
            continue
        for subset in ("all", "unseen"):
            m = entry[subset]
            r1 = m["rouge1"]
            rows.append(
                f"| {name} | {subset} | {m['n']} | {r1['mean']:.4f} [{r1['ci95'][0]:.4f}, {r1['ci95'][1]:.4f}] "
                f"| {m['rouge2']['mean']:.4f} | {m['rougeL']['mean']:.4f} | {m['clinical_micro_f1']['mean']:.4f} |"
            )
    reference = metrics.get("reference_system", RETRIEVAL)
    paired = metrics.get("paired_vs_reference", {})
    checks = [f"Reference baseline (the strongest non-neural one on validation): `{reference}`."]
    for name in [n for n in systems if n.startswith(TUNED) and "not_run" not in systems[n]]:
        tuned = systems[name]["all"]
        met = [f"{k} {tuned[k]['mean']:.4f} ({'met' if tuned[k]['mean'] >= v else 'NOT met'}: ≥ {v})"
               for k, v in TARGET.items()]  # fmt: skip
        checks.append(f"- `{name}`: " + "; ".join(met))
        for subset in ("all", "unseen"):
            a, b = systems[name][subset]["rouge1"]["mean"], systems[reference][subset]["rouge1"]["mean"]
            d = (paired.get(name) or {}).get(subset, {}).get("rouge1")
            test = (
                f"; paired {d['mean_diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}], p = {d['p_value']:.3f}"
                if d
                else ""
            )
            checks.append(f"  - ROUGE-1 on `{subset}` vs `{reference}`: {a:.4f} vs {b:.4f} "
                          f"({'above' if a > b else 'NOT above'}){test}")  # fmt: skip
        a, b = tuned[HEADLINE]["mean"], systems[reference]["all"][HEADLINE]["mean"]
        checks.append(f"  - clinical headline ({HEADLINE}) {a:.4f} vs {b:.4f} ({'not below' if a >= b else 'BELOW'})")
    report = (out / "report.md").read_text(encoding="utf-8")
    times = next((line for line in report.splitlines() if line.startswith("Stage times")), "")
    body = "\n".join(
        [
            provenance(),
            "",
            f"Scorer: {metrics.get('scorer')}. OpenI test split (576; `unseen` = findings not verbatim in train).",
            "",
            *rows,
            "",
            *checks,
            "",
            times,
        ]
    )
    append_section("Quality: radllama-mini on OpenI (issue #2 target)", body)  # targets of issues #2 and #13
    return body


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
