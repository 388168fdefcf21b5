"""Decoding choices on the VALIDATION split (never test): greedy vs minimum Bayes risk, beside the
retrieval baselines, with each method's cost per case.

    python bench/bench_mbr.py [--model runs/demo/mini/base] [--adapter runs/demo/mini/lora]
        [--split runs/demo/data/validation.jsonl] [--train runs/demo/data/train.jsonl]

Rows: TF-IDF top-1 and the retrieval consensus (baselines, fitted on train); the tuned model greedy;
MBR over greedy + N samples (+ the prompt's retrieved impressions) for a few N and temperatures.
What the demo runs is chosen from this table, so the test split stays unseen by every choice.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells  # noqa: E402

from radllama.baselines import make_baseline  # noqa: E402
from radllama.generate.impressions import complete_impressions  # noqa: E402
from radllama.generate.mbr import MbrSettings  # noqa: E402
from radllama.inference import load_model  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Decoding on validation: greedy vs minimum Bayes risk (bench_mbr.py)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--split", type=Path, default=Path("runs/demo/data/validation.jsonl"))
    ap.add_argument("--train", type=Path, default=Path("runs/demo/data/train.jsonl"))
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if "test" in args.split.name:
        raise SystemExit("choices are made on validation: give the validation split")

    val, train = read_jsonl(args.split), read_jsonl(args.train)
    refs, findings = [r["impression"] for r in val], [r["findings"] for r in val]
    rows = ["| method | ROUGE-1 | ROUGE-2 | ROUGE-L | s per case | candidates won: greedy / sample / retrieved |",
            "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for name in ("tfidf-retrieval", "retrieval-consensus"):  # k of the consensus: bench/sweep_decoding.py
        started = time.perf_counter()
        preds = make_baseline(name).fit(train).predict(findings)
        rows.append(
            f"| {name} (baseline) | {rouge_cells(preds, refs)} | {(time.perf_counter() - started) / len(val):.4f} | |"
        )
    loaded = load_model(args.model, args.adapter, backend=args.backend, batch_size=64)
    settings: list[MbrSettings | None] = [None]
    settings += [MbrSettings(samples=0)]
    settings += [MbrSettings(samples=0, retrieved=k) for k in (5, 8)]
    settings += [MbrSettings(samples=4, temperature=0.8), MbrSettings(samples=4, temperature=0.8, retrieved=8)]
    settings += [MbrSettings(samples=8, temperature=0.8, retrieved=0)]
    for mbr in settings:
        started = time.perf_counter()
        done = complete_impressions(loaded, findings, 64, mbr=mbr)
        per_case = (time.perf_counter() - started) / len(val)
        if mbr is None:
            label, won = "greedy", ""
        else:
            pool = "the prompt's retrieved" if mbr.retrieved is None else f"{mbr.retrieved} retrieved"
            label = f"MBR, {mbr.samples} samples, T={mbr.temperature}, {pool}"
            won = " / ".join(str(sum(c.source == s for c in done)) for s in ("greedy", "sample", "retrieved"))
        rows.append(f"| {label} | {rouge_cells([c.text for c in done], refs)} | {per_case:.4f} | {won} |")
        print(rows[-1], flush=True)
    loaded.backend.close()
    note = (
        f"{len(val)} validation cases of the demo's OpenI split, radllama-mini LoRA ({args.backend} backend), "
        "at most 64 new tokens; MBR utility = mean ROUGE-1/2/L F1 between candidates, top-p 0.95, seed 0. "
        "s per case: wall time on this 2-core CPU (shared with other work, so read the ratios)."
    )
    publish(TITLE, note, "\n".join(rows), write=not args.no_write)


if __name__ == "__main__":
    main()
