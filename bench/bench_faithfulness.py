"""Issue #20: clinical faithfulness of the tuned radllama-mini and what each added piece buys, on VALIDATION
and the faithfulness benchmark's DEV edition only (the held-out edition and test only report, in the demo).

    python bench/bench_faithfulness.py --model runs/demo/mini/base --adapter runs/demo/mini/lora \
        --data runs/demo/data [--no-write]

Rows: the model alone (greedy); ROUGE MBR over its greedy answer and the impressions its prompt shows (the
decoding shipped before #20); the same with the clinical term (utility lost per acute finding omitted,
unsupported or on the wrong side, :mod:`radllama.consistency`) at several weights; with the findings' acute
sentences as one more candidate; the rule alone as a fallback (those sentences when there are any, else the
model's answer); and the two retrieval baselines. Columns: validation ROUGE and clinical F1 of positive
findings against the references; on the dev edition, critical findings named, invented positives on normal
findings, sides kept, negations kept. The greedy answers are generated once; every MBR row re-decides from
the same candidates, so the rows differ only in the rule that picks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells  # noqa: E402

from radllama.baselines import RetrievalConsensus, TfidfRetrievalImpression  # noqa: E402
from radllama.evaluate.clinical import clinical_f1  # noqa: E402
from radllama.evaluate.faithfulness import build_benchmark, describe, score  # noqa: E402
from radllama.generate.impressions import encode_prompts, prompts_and_examples  # noqa: E402
from radllama.generate.mbr import MbrSettings, extractive_impression, pick  # noqa: E402
from radllama.inference import Decoding, load_model  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Issue #20: clinical faithfulness on validation and the benchmark's dev edition (bench_faithfulness.py)"
WEIGHTS = (0.25, 1.0, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/demo/mini/base")
    ap.add_argument("--adapter", default="runs/demo/mini/lora")
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    data = Path(args.data)
    train, validation = read_jsonl(data / "train.jsonl"), read_jsonl(data / "validation.jsonl")
    bench = build_benchmark("dev", train)
    findings = [r["findings"] for r in validation] + [c["findings"] for c in bench]
    n_val = len(validation)

    loaded = load_model(args.model, args.adapter, backend="transformers", batch_size=64)
    t0 = time.perf_counter()
    prompts, shown = prompts_and_examples(loaded, findings)
    greedy = [c.text for c in loaded.backend.generate(encode_prompts(loaded, prompts, 64), Decoding(64))]
    t_greedy = (time.perf_counter() - t0) / len(findings)
    loaded.backend.close()

    rows: dict[str, tuple[list[str], float]] = {"model alone (greedy)": (greedy, t_greedy)}

    def mbr_row(name: str, settings: MbrSettings) -> None:
        t = time.perf_counter()
        out = []
        for f, g, s in zip(findings, greedy, shown, strict=True):
            index, texts = pick(f, [g, *(s or [])], settings)
            out.append(texts[index])
        rows[name] = (out, t_greedy + (time.perf_counter() - t) / len(findings))

    mbr_row("MBR, ROUGE only (shipped before #20)", MbrSettings(samples=0))
    for w in WEIGHTS:
        mbr_row(f"MBR + clinical term {w}", MbrSettings(samples=0, clinical=w))
    for w in WEIGHTS:
        mbr_row(f"MBR + clinical term {w} + acute sentences", MbrSettings(samples=0, clinical=w, extractive=True))
    t = time.perf_counter()
    rule = [extractive_impression(f) or g for f, g in zip(findings, greedy, strict=True)]
    rows["rule alone: acute sentences, else greedy"] = (rule, t_greedy + (time.perf_counter() - t) / len(findings))
    for name, baseline in (
        ("retrieval-consensus", RetrievalConsensus()),
        ("tfidf-retrieval", TfidfRetrievalImpression()),
    ):
        t = time.perf_counter()
        rows[name] = (baseline.fit(train).predict(findings), (time.perf_counter() - t) / len(findings))

    refs = [r["impression"] for r in validation]
    lines = [
        f"| decoding (validation n={n_val}, dev benchmark n={len(bench)}) | R-1 | R-2 | R-L | clinical F1 (13, micro) "
        "| "
        "critical named | (keyword) | invented on normal | side kept | negation kept | s per case |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (texts, seconds) in rows.items():
        val, dev = texts[:n_val], texts[n_val:]
        s = score(bench, dev)
        f1 = clinical_f1(val, refs)["micro_f1"]
        lines.append(
            f"| {name} | {rouge_cells(val, refs)} | {f1:.4f} | {s['recall']:.1%} | {s['recall_keyword']:.1%} | "
            f"{s['invented']:.1%} | {s['laterality']:.1%} | {s['negation']:.1%} | {seconds:.4f} |"
            if s["laterality"] is not None
            else f"| {name} | {rouge_cells(val, refs)} | {f1:.4f} | {s['recall']:.1%} | {s['recall_keyword']:.1%} | "
            f"{s['invented']:.1%} | – | {s['negation']:.1%} | {seconds:.4f} |"
        )
    kinds = describe(bench)
    note = (
        f"The dev edition: {kinds['kind']}, origins {kinds['origin']}. The model: `{args.model}` + `{args.adapter}`. "
        "Greedy answers generated once (transformers); every other row re-decides from the same candidates."
    )
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
