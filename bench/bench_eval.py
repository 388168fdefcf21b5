"""Scoring speed: 10,000 prediction pairs through ROUGE + the clinical score, beside a naive loop.

    python bench/bench_eval.py [--predictions runs/demo/predictions] [--pairs 10000] [--naive-pairs 2000]

Takes the prediction lines of every system in ``--predictions`` (real model output and
baselines), repeats them with fresh ids up to ``--pairs`` lines and times, in one run:

* ``evaluate_predictions`` (what ``radllama eval``/``compare`` run): per-pair ROUGE, clinical
  labels, words, bootstrap CIs for ``all`` and ``unseen``;
* its two scoring parts alone (``rouge_many``, ``present_matrix`` on predictions + references);
* the naive counterpart on the first ``--naive-pairs`` pairs: ``rouge_pair`` per pair and the
  labeller called once per text *per observation* (how ``present_matrix`` used to work),
  extrapolated linearly to ``--pairs``.

Checks that the two give identical per-pair ROUGE and clinical labels. Target: ≤ 30 s for
10,000 pairs on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.errors import RadLlamaError  # noqa: E402
from radllama.evaluate.metrics import evaluate_predictions  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402
from radllama.labeller import OBSERVATIONS, PRESENT, label_report, present_matrix  # noqa: E402
from radllama.rouge import ROUGE_TYPES, rouge_many, rouge_pair  # noqa: E402

TITLE = "Evaluation: scoring 10,000 prediction pairs (bench_eval.py)"
TARGET_S = 30.0


def load_pairs(folder: Path, n: int) -> tuple[list[dict], int]:
    """``n`` prediction lines cycled from every JSONL in ``folder`` (unique ids), and the source line count."""
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise RadLlamaError(f"{folder}: no prediction files (*.jsonl); run `radllama demo` first")
    lines = [r for f in files for r in read_jsonl(f) if r.get("status", "ok") == "ok"]
    out = []
    for k in range(n):
        rec = lines[k % len(lines)]
        out.append({**rec, "id": f"{rec['id']}#{k}", "system": "bench"})
    return out, len(lines)


def naive_scores(preds: list[str], refs: list[str]) -> tuple[dict[str, list[float]], np.ndarray, np.ndarray]:
    """Per-pair ROUGE and present labels the slow way: the labeller re-run for every observation."""
    rouge: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for p, r in zip(preds, refs, strict=True):
        for name, value in rouge_pair(p, r).items():
            rouge[name].append(value)

    def matrix(texts: list[str]) -> np.ndarray:
        return np.array([[label_report(t)[o] == PRESENT for o in OBSERVATIONS] for t in texts], dtype=bool)

    return rouge, matrix(preds), matrix(refs)


def timed(fn, *args):  # noqa: ANN001, ANN002, ANN202
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=Path, default=Path("runs/demo/predictions"))
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--naive-pairs", type=int, default=2_000, help="pairs the naive loop is timed on")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    records, n_source = load_pairs(args.predictions, args.pairs)
    preds = [str(r["prediction"]) for r in records]
    refs = [str(r["reference"]) for r in records]
    n_naive = min(args.naive_pairs, len(records))

    t_eval, doc = timed(evaluate_predictions, records)
    t_rouge, rouge = timed(rouge_many, preds, refs)
    t_clin, (pm, rm) = timed(lambda: (present_matrix(preds), present_matrix(refs)))
    t_naive, (n_rouge, n_pm, n_rm) = timed(naive_scores, preds[:n_naive], refs[:n_naive])
    naive_full = t_naive * len(records) / n_naive

    same_rouge = all(rouge[k][:n_naive] == n_rouge[k] for k in ROUGE_TYPES)
    same_labels = bool((pm[:n_naive] == n_pm).all() and (rm[:n_naive] == n_rm).all())
    r1 = doc["systems"]["bench"]["all"]["rouge1"]["mean"]
    rows = [
        "| what | pairs | seconds | pairs/s | target | note |",
        "|---|---:|---:|---:|---|---|",
        f"| `evaluate_predictions` (ROUGE + clinical + words + bootstrap CIs) | {len(records):,} | {t_eval:.2f} | "
        f"{len(records) / t_eval:,.0f} | ≤ {TARGET_S:.0f} s: {'met' if t_eval <= TARGET_S else 'NOT met'} | "
        f"ROUGE-1 {r1:.4f} |",
        f"| `rouge_many` alone | {len(records):,} | {t_rouge:.2f} | {len(records) / t_rouge:,.0f} | – | "
        "rouge-score, stemmer on |",
        f"| `present_matrix` alone (predictions + references) | {len(records):,} | {t_clin:.2f} | "
        f"{len(records) / t_clin:,.0f} | – | each distinct text labelled once |",
        f"| naive: `rouge_pair` loop + labeller per text per observation | {n_naive:,} | {t_naive:.2f} | "
        f"{n_naive / t_naive:,.0f} | – | extrapolated to {len(records):,}: {naive_full:.1f} s "
        f"({naive_full / t_eval:.1f}× the full evaluation) |",
    ]
    table = "\n".join(rows)
    note = (
        f"{len(records):,} pairs cycled from the {n_source:,} "
        f"prediction lines in `{args.predictions}` ({len(set(preds)):,} distinct predictions, "
        f"{len(set(refs)):,} distinct references). Identical results to the naive loop on its "
        f"{n_naive:,} pairs: ROUGE {'yes' if same_rouge else 'NO'}, clinical labels {'yes' if same_labels else 'NO'}. "
        "One process (the scorer is pure Python; no worker pool was needed for the target)."
    )
    identical = same_rouge and same_labels
    publish(TITLE, note, table, write=identical and not args.no_write)  # never record a wrong result
    if not identical:
        raise SystemExit("results differ from the naive loop")


if __name__ == "__main__":
    main()
