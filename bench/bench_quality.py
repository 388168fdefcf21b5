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
TUNED, RETRIEVAL = "radllama-mini-lora", "tfidf-retrieval"


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
    tuned = systems[TUNED]["all"]
    checks = [
        f"- target {k} ≥ {v}: measured {tuned[k]['mean']:.4f} → {'met' if tuned[k]['mean'] >= v else 'NOT met'}"
        for k, v in TARGET.items()
    ]
    for subset in ("all", "unseen"):
        a, b = systems[TUNED][subset]["rouge1"]["mean"], systems[RETRIEVAL][subset]["rouge1"]["mean"]
        checks.append(
            f"- above TF-IDF retrieval on `{subset}` (ROUGE-1): {a:.4f} vs {b:.4f} → {'met' if a > b else 'NOT met'}"
        )
    paired = metrics.get("paired_vs_reference", {}).get(TUNED)
    for subset, entry in (paired or {}).items():
        d = entry["rouge1"]
        checks.append(
            f"- paired bootstrap, {TUNED} − {RETRIEVAL}, ROUGE-1 on `{subset}`: {d['mean_diff']:+.4f} "
            f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}], p = {d['p_value']:.3f} (n = {d['n']})"
        )
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
    append_section("Quality: radllama-mini on OpenI (issue #2 target)", body)
    return body


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
