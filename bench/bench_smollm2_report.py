"""Issue #29: the tuned SmolLM2-135M-Instruct ALONE (greedy) on the frozen heldout-v2 edition and the OpenI test
split, beside the systems with no model. Report only: the recipe was fixed before this ran.

    python bench/bench_smollm2_report.py --model runs/smollm2 --adapter runs/sweep/v2/best --name v2 \
        --data runs/data/openi

heldout-v2 is read by the independent reader (the headline) and by ours; test gets ROUGE-1/2/L, the clinical F1
of positive findings, how many answers are a training impression verbatim, and paired tests (sign-flip
permutation, radllama.evaluate.stats) of the model's test ROUGE-1 and clinical F1 against each baseline.
Each adapter gets its own section (``--name``); answers are cached in ``runs/sweep/answers/report-NAME.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells  # noqa: E402
from sweep_smollm2 import cached_answers  # noqa: E402

from radllama.baselines import make_baseline  # noqa: E402
from radllama.evaluate.clinical import clinical_f1, finding_counts  # noqa: E402
from radllama.evaluate.edition_score import score_both  # noqa: E402
from radllama.evaluate.editions import FINDING_TYPES, load_edition  # noqa: E402
from radllama.evaluate.stats import paired_permutation, paired_permutation_f1  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402
from radllama.labeller import present_matrix  # noqa: E402
from radllama.rouge import rouge_many  # noqa: E402

TITLE = "Issue #29: SmolLM2-135M-Instruct + LoRA ({name}), the model alone, on heldout-v2 and test"
KEYS = ("named", "multi_all_named", "hedge_kept", "resolved_asserted", "invented_normal", "invented_negation",
        "side_kept")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/smollm2")
    ap.add_argument("--adapter", default="runs/sweep/v2/best")
    ap.add_argument("--name", default="v2", help="the adapter's name in the title and the answer cache")
    ap.add_argument("--data", default="runs/data/openi")
    ap.add_argument("--cache", default="runs/sweep/answers")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cases = load_edition("heldout-v2")
    train, test = read_jsonl(Path(args.data) / "train.jsonl"), read_jsonl(Path(args.data) / "test.jsonl")
    held_findings, test_findings = [c["findings"] for c in cases], [r["findings"] for r in test]
    refs = [r["impression"] for r in test]
    seen = {r["impression"].strip().lower() for r in train}
    findings = held_findings + test_findings
    texts, per_case = cached_answers(Path(args.cache) / f"report-{args.name}.json", args.model, args.adapter,
                                     findings, Path(args.data) / "train.jsonl", False)  # fmt: skip
    seconds = per_case * len(findings)
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
    tests = paired_tests({n: t[len(cases) :] for n, t in systems.items()}, refs, "smollm2-lora (model alone, greedy)")
    note = (
        f"Adapter `{args.adapter}` on `{args.model}`; {len(cases)} heldout-v2 cases and {len(test)} test cases decoded "
        f"greedily in {seconds:.0f} s (transformers, batch 32, 64 new tokens; the machine not quiet).\n\n{tests}"
    )
    print("\n".join(lines))
    publish(TITLE.format(name=args.name), note, "\n".join(lines), write=not args.no_write)


def paired_tests(test_texts: dict[str, list[str]], refs: list[str], model: str) -> str:
    """The model against each baseline on test: paired ROUGE-1 and clinical micro F1 (A - B, p of a sign-flip
    permutation test), as a sentence."""
    ref_present = present_matrix(refs)

    def counts(texts: list[str]) -> np.ndarray:
        return finding_counts(present_matrix(texts), ref_present)

    r1 = {n: rouge_many(t, refs)["rouge1"] for n, t in test_texts.items()}
    parts = []
    for name in test_texts:
        if name == model:
            continue
        r = paired_permutation(r1[model], r1[name])
        f = paired_permutation_f1(counts(test_texts[model]), counts(test_texts[name]))
        parts.append(f"vs {name}: ROUGE-1 {r['mean_diff']:+.4f} (p={r['p_value']:.4f}), "
                     f"clinical F1 {f['mean_diff']:+.4f} "
                     f"(p={f['p_value']:.4f})")  # fmt: skip
    return "Paired tests on test, the model minus the baseline: " + "; ".join(parts) + "."


if __name__ == "__main__":
    main()
