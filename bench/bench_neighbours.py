"""Issue #21: approximate neighbours (SVD + faiss IVF, exact re-scoring) against exact TF-IDF ranking.

    python bench/bench_neighbours.py --data DATA                   # DATA = `radllama data openi --out DATA`
    python bench/bench_neighbours.py --data DATA --archive /tmp/archive-100k/reports.jsonl --n 75000

On OpenI (validation queries, the train split as the index, the approximate index forced although
the index is below ``TfidfRetriever.approximate_from``): how often the approximate neighbours are the
exact ones, and the retrieval baseline's ROUGE with each (the nearest training impression as the
answer). On a synthetic archive (``bench/make_archive.py``; never quality figures): index build and
all-queries time of both methods (exact timed on a sample), and the share of exact top-3 neighbours
found, with the mean exact cosine of each method's neighbours. Nothing here reads the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.io import read_jsonl  # noqa: E402
from radllama.retrieval import TfidfRetriever  # noqa: E402
from radllama.rouge import rouge_many  # noqa: E402

TITLE = "Approximate neighbours: SVD + faiss candidates, exact re-scoring (bench_neighbours.py, issue #21)"
K = 3


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row of ``b`` (exact) found in the same row of ``a``."""
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def openi_rows(data: Path) -> list[str]:
    train, val = read_jsonl(data / "train.jsonl"), read_jsonl(data / "validation.jsonl")
    queries, refs = [r["findings"] for r in val], [r["impression"] for r in val]
    exact, approx = TfidfRetriever(train, approximate=False), TfidfRetriever(train, approximate=True)
    rows = []
    tops = {}
    for name, retriever in (("exact", exact), ("approximate (forced)", approx)):
        tops[name] = top = retriever.nearest(queries, k=K)
        scores = rouge_many([train[row[0]]["impression"] for row in top], refs)
        r1, r2, rl = (float(np.mean(scores[m])) for m in ("rouge1", "rouge2", "rougeL"))
        rows.append(f"| {name} | {len(train):,} | {len(val):,} | {r1:.4f} | {r2:.4f} | {rl:.4f} |")
    texts, ids = [r["findings"] for r in train], [r["id"] for r in train]
    loo = (exact.nearest(texts, K, ids, texts), approx.nearest(texts, K, ids, texts))
    first = np.mean(tops["exact"][:, 0] == tops["approximate (forced)"][:, 0])
    found = overlap(tops["approximate (forced)"], tops["exact"])
    same = (
        f"Validation queries: nearest neighbour the same {first:.1%}, "
        f"exact top-{K} found {found:.1%}; training prompts (every train "
        f"record, leave-one-out and leave-same-findings-out): exact top-{K} found {overlap(loo[1], loo[0]):.1%}, "
        f"identical lists {np.mean((loo[0] == loo[1]).all(axis=1)):.1%}."
    )
    head = ["| ranking | index | validation queries | ROUGE-1 | ROUGE-2 | ROUGE-L |", "|---|---:|---:|---:|---:|---:|"]
    return head + rows + ["", same]


def archive_rows(path: Path, n: int, sample: int) -> list[str]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(records) >= n:
                break
            r = json.loads(line)
            records.append({"id": r["report_id"], "findings": r["findings"], "impression": r["impression"]})
    texts, ids = [r["findings"] for r in records], [r["id"] for r in records]
    t = time.perf_counter()
    approx = TfidfRetriever(records, approximate=True)
    build_a = time.perf_counter() - t
    t = time.perf_counter()
    got = approx.nearest(texts, K, ids, texts)
    all_a = time.perf_counter() - t
    t = time.perf_counter()
    exact = TfidfRetriever(records, approximate=False)
    build_e = time.perf_counter() - t
    picked = np.sort(np.random.default_rng(1).choice(len(records), size=min(sample, len(records)), replace=False))
    q = [texts[i] for i in picked]
    t = time.perf_counter()
    want = exact.nearest(q, K, [ids[i] for i in picked], q)
    per_e = (time.perf_counter() - t) / len(q)
    sims = exact.similarities(q)
    cos_e = float(np.take_along_axis(sims, want, 1).mean())
    cos_a = float(np.take_along_axis(sims, got[picked], 1).mean())
    extrapolated = f"{per_e * len(records):.0f} s (extrapolated: {per_e * 1e3:.2f} ms/query)"
    found = overlap(got[picked], want)
    return [
        f"Synthetic archive, first {len(records):,} reports of `{path}` as the index, every one a query "
        f"(leave-one-out and leave-same-findings-out, k={K}); exact ranking timed on {len(q):,} sampled queries "
        "and extrapolated.",
        "",
        "| ranking | build | all queries | exact top-3 found (sample) | mean exact cosine of the neighbours |",
        "|---|---:|---:|---:|---:|",
        f"| exact | {build_e:.1f} s | {extrapolated} | 100% | {cos_e:.4f} |",
        f"| approximate | {build_a:.1f} s | {all_a:.1f} s | {found:.1%} | {cos_a:.4f} ({cos_a / cos_e:.1%}) |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="OpenI splits (train/validation.jsonl)")
    ap.add_argument("--archive", type=Path, help="a bench/make_archive.py reports.jsonl")
    ap.add_argument("--n", type=int, default=75_000, help="archive reports used as the index")
    ap.add_argument("--sample", type=int, default=1000, help="queries ranked exactly for comparison")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    lines = openi_rows(args.data)
    if args.archive is not None:
        lines += ["", *archive_rows(args.archive, args.n, args.sample)]
    note = (
        f"OpenI from `{args.data}`: the retrieval baseline (nearest training impression) on the validation split, "
        "exact ranking beside the approximate index forced on the same 2,551-record train index (by default it "
        f"is used from {TfidfRetriever.approximate_from:,} records on, so the demo ranks exactly)."
    )
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
