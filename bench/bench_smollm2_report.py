"""Issue #29: the tuned SmolLM2-135M-Instruct ALONE (greedy) on the frozen heldout-v2 edition and the OpenI test
split, beside the systems with no model. Report only: the recipe was fixed before this ran.

    python bench/bench_smollm2_report.py --model runs/smollm2 --adapter runs/sweep/v1b --data runs/data/openi

heldout-v2 is read by the independent reader (the headline) and by ours; test gets ROUGE-1/2/L, the clinical F1
of positive findings, and how many answers are a training impression verbatim.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells  # noqa: E402
from sweep_smollm2 import answers  # noqa: E402

from radllama.baselines import make_baseline  # noqa: E402
from radllama.evaluate.clinical import clinical_f1  # noqa: E402
from radllama.evaluate.edition_score import score_both  # noqa: E402
from radllama.evaluate.editions import FINDING_TYPES, load_edition  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Issue #29: SmolLM2-135M-Instruct + LoRA, the model alone, on heldout-v2 and test (bench_smollm2_report.py)"
KEYS = ("named", "multi_all_named", "hedge_kept", "resolved_asserted", "invented_normal", "invented_negation",
        "side_kept")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/smollm2")
    ap.add_argument("--adapter", default="runs/sweep/v1b")
    ap.add_argument("--data", default="runs/data/openi")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cases = load_edition("heldout-v2")
    train, test = read_jsonl(Path(args.data) / "train.jsonl"), read_jsonl(Path(args.data) / "test.jsonl")
    held_findings, test_findings = [c["findings"] for c in cases], [r["findings"] for r in test]
    refs = [r["impression"] for r in test]
    seen = {r["impression"].strip().lower() for r in train}
    t0 = time.perf_counter()
    texts = answers(args.model, args.adapter, held_findings + test_findings, Path(args.data) / "train.jsonl", False)
    seconds = time.perf_counter() - t0
    systems = {"smollm2-lora (model alone, greedy)": texts}
    for name in ("acute-rule", "retrieval-consensus", "findings-verbatim"):
        systems[name] = make_baseline(name).fit(train).predict(held_findings + test_findings)
    head = " | ".join(KEYS)
    lines = [f"| system | reader | {head} | test R-1 | R-2 | R-L | clinical F1 | training impression verbatim |",
             "|---|---|" + "---|" * (len(KEYS) + 5)]  # fmt: skip
    for name, texts in systems.items():
        held, on_test = texts[: len(cases)], texts[len(cases) :]
        both = score_both(cases, held, FINDING_TYPES)
        copied = sum(t.strip().lower() in seen for t in on_test) / len(on_test)
        f1 = clinical_f1(on_test, refs)["micro_f1"]
        for reader in ("judge", "ours"):
            cells = " | ".join("–" if both[reader][k] is None else f"{both[reader][k]:.1%}" for k in KEYS)
            same = " | ".join(["(as above)"] * 5)
            tail = f"{rouge_cells(on_test, refs)} | {f1:.4f} | {copied:.1%}" if reader == "judge" else same
            lines.append(f"| {name} | {reader} | {cells} | {tail} |")
    note = (
        f"Adapter `{args.adapter}` on `{args.model}`; {len(cases)} heldout-v2 cases and {len(test)} test cases decoded "
        f"greedily in {seconds:.0f} s (transformers, batch 32, 64 new tokens; the machine not quiet)."
    )
    print(note)
    print("\n".join(lines))
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
