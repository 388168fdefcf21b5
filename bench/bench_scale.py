"""Issue #21: wall time and peak RSS of every stage on a synthetic archive of N reports.

    python bench/make_archive.py --n 100000 --out /tmp/archive-100k
    flock /tmp/radllama-bench.lock python bench/bench_scale.py --archive /tmp/archive-100k
    flock /tmp/radllama-bench.lock python bench/bench_scale.py --archive /tmp/archive-100k --only eval  # one stage

Each stage runs in its own process (peak RSS from ``wait4``), one after another: ``data table``
from CSV and Parquet (patient-grouped), ``data mimic-cxr`` from the folder and the zip, the
retrieval index and one server request against it, the training neighbours (k=3, leave-one-out
and leave-same-findings-out), ``radllama train`` with the shipped LoRA recipe to its first
optimiser step (on a random-weight radllama-mini base of the shipped size), ``radllama
generate`` with that adapter over one shard of the test split (about 3,750 cases at every size),
``radllama eval`` of two systems over the test split, ``review create`` and ``compare``.
Results of every N accumulate in ``--results`` and the table in BENCHMARKS.md shows them all.
The archive is synthetic: never quality figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

TITLE = "Scale: a synthetic archive through every stage (bench_scale.py, issue #21)"
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "radllama.cli"]


def run_measured(argv: list[str]) -> tuple[float, float, str]:
    """Like :func:`run`, with the child's own peak RSS (``wait4`` on it, not on the process group)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(argv)} failed (rerun it to see why)")
    return wall, usage.ru_maxrss / 1e6, out  # ru_maxrss is in KB on Linux


# --- stages that are library calls, run in their own process (`bench_scale.py _stage NAME ...`) ---


def stage_retrieval(train: Path, queries: Path, sample: int) -> dict:
    """Index build, one-request latency (the server), and training neighbours on ``sample`` queries."""
    import numpy as np

    from radllama.io import read_jsonl
    from radllama.retrieval import TfidfRetriever

    records = read_jsonl(train)
    t = time.perf_counter()
    retriever = TfidfRetriever(records)
    fit = time.perf_counter() - t
    asks = [r["findings"] for r in read_jsonl(queries)[:50]]
    t = time.perf_counter()
    for text in asks:
        retriever.query([text], k=3)
    per_request = (time.perf_counter() - t) / len(asks)
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(records), size=min(sample, len(records)), replace=False))
    mine = [records[i] for i in picked]
    texts = [r["findings"] for r in mine]
    t = time.perf_counter()
    retriever.nearest(texts, k=3, exclude_ids=[r["id"] for r in mine], exclude_findings=texts)
    per_query = (time.perf_counter() - t) / len(mine)
    return {"records": len(records), "method": retriever.describe()["method"], "fit_s": fit,
            "request_ms": per_request * 1e3, "neighbour_ms": per_query * 1e3,
            "sampled": len(mine)}  # fmt: skip


def stage_base(out: Path, train: Path) -> dict:
    """A random-weight radllama-mini of the shipped size, its tokenizer trained on 20,000 reports."""
    from radllama.io import read_jsonl
    from radllama.models.mini import build_model, save_pretrained, train_tokenizer
    from radllama.train.config import load_config

    cfg = load_config(ROOT / "src/radllama/configs/mini-base.yaml")
    texts = [f"{r['findings']}\n{r['impression']}" for r in read_jsonl(train)[:20_000]]
    tok = train_tokenizer(texts, cfg.mini.vocab_size)
    save_pretrained(build_model(cfg.mini, tok, seed=0), tok, out)
    return {}


def stage_predictions(test: Path, out: Path) -> dict:
    """Two systems' predictions over the test split: the reference's first sentence, another case's."""
    from radllama.io import read_jsonl, write_jsonl

    recs = read_jsonl(test)
    for name, pick in (("first-sentence", lambda i: recs[i]["impression"].split(".")[0] + "."),
                       ("neighbour", lambda i: recs[(i + 1) % len(recs)]["impression"])):  # fmt: skip
        write_jsonl(out / f"{name}.jsonl", ({"id": r["id"], "system": name, "findings": r["findings"],
                    "reference": r["impression"], "prediction": pick(i)} for i, r in enumerate(recs)))  # fmt: skip
    return {"cases": len(recs)}


STAGES = {"retrieval": stage_retrieval, "base": stage_base, "predictions": stage_predictions}
GROUPS = ("table", "mimic", "retrieval", "train", "generate", "eval", "review", "compare")  # for --skip and --only


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_stage":
        name, *args = sys.argv[2:]
        fn = STAGES[name]
        print(json.dumps(fn(*[int(a) if a.isdigit() else Path(a) for a in args])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, help="a bench/make_archive.py folder (none: only publish --results)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: ARCHIVE/work)")
    ap.add_argument("--results", type=Path, default=Path("/tmp/bench-scale-results.json"))
    ap.add_argument("--neighbour-sample", type=int, default=2000, help="training queries timed for neighbours")
    ap.add_argument("--skip", default="", help=f"stages to skip: any of {','.join(GROUPS)}")
    ap.add_argument("--only", default="", help="run only these stages (the split from an earlier run in --work)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.archive is not None:
        measure(args)
    publish_results(args.results, write=not args.no_write)


def measure(args: argparse.Namespace) -> None:
    """Run the chosen stages on ``args.archive`` and add their rows to ``args.results``."""
    skip, only = (set(filter(None, option.split(","))) for option in (args.skip, args.only))
    if not skip | only <= set(GROUPS):
        raise SystemExit(f"unknown stage in --skip/--only: {', '.join(sorted((skip | only) - set(GROUPS)))}")

    def wanted(group: str) -> bool:
        return group not in skip and (not only or group in only)

    work = args.work or args.archive / "work"
    work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve()), "_stage"]
    n = sum(1 for _ in open(args.archive / "reports.jsonl", encoding="utf-8"))
    rows: dict[str, tuple[float, float, str]] = {}

    def stage(label: str, argv: list[str], note: str = "", save: bool = True) -> str:
        wall, rss, out = run_measured(argv)
        rows[label] = (wall, rss, note)
        print(f"{n:,} | {label} | {wall:.1f} s | {rss:.2f} GB | {note}", flush=True)
        if save:  # after every stage: a stopped run keeps what it measured
            _save(args.results, n, rows)
        return out

    table = ["data", "table", "--findings-col", "findings", "--impression-col", "impression",
             "--id-col", "report_id", "--group-col", "patient_id"]  # fmt: skip
    if wanted("table"):
        csv = ["--input", str(args.archive / "reports.csv"), "--out", str(work / "t")]
        stage("data table (CSV)", CLI + table + csv)
        if (args.archive / "reports.parquet").exists():
            parquet = ["--input", str(args.archive / "reports.parquet"), "--out", str(work / "tp")]
            stage("data table (Parquet)", CLI + table + parquet)
    if wanted("mimic"):
        split_csv = str(args.archive / "mimic/mimic-cxr-2.0.0-split.csv")
        for label, src in (("folder", args.archive / "mimic"), ("zip", args.archive / "mimic-cxr-reports.zip")):
            mimic = ["data", "mimic-cxr", "--reports", str(src), "--split-csv", split_csv, "--out", str(work / "m")]
            stage(f"data mimic-cxr ({label})", CLI + mimic)
    data = work / "t"
    if not (data / "train.jsonl").exists():
        raise SystemExit(f"no split in {data}: run the table stage (with this --work) first")
    n_train = sum(1 for _ in open(data / "train.jsonl", encoding="utf-8"))
    if wanted("retrieval"):
        queries = [str(data / "train.jsonl"), str(data / "validation.jsonl"), str(args.neighbour_sample)]
        got = json.loads(stage("retrieval", me + ["retrieval", *queries], save=False))  # split into rows below
        wall, rss, _ = rows.pop("retrieval")
        index = f"{got['records']:,} train records, {got['method']}"
        rows["retrieval index (fit on train)"] = (got["fit_s"], rss, index)
        rows["server retrieval, one request (k=3)"] = (got["request_ms"] / 1e3, rss, f"{got['request_ms']:.1f} ms")
        full = got["neighbour_ms"] * n_train / 1e3
        rows["training neighbours (k=3, all train)"] = (
            full,
            rss,
            f"{got['neighbour_ms']:.2f} ms/query x {n_train:,} (timed on {got['sampled']:,} queries)",
        )
        _save(args.results, n, rows)
    if wanted("train"):
        base = work / "base"
        if not (base / "config.json").exists():
            run_measured(me + ["base", str(base), str(data / "train.jsonl")])
        recipe = [
            "train",
            "--config",
            str(ROOT / "src/radllama/configs/mini-lora.yaml"),
            f"data.train={data / 'train.jsonl'}",
            f"model.path={base}",
            f"output_dir={work / 'lora'}",
            "optim.max_steps=1",
            "log_every=1",
            "--overwrite",  # a fresh run each time: no examples cache reused
        ]
        stage("train to first step (mini-lora.yaml, k=3)", CLI + recipe, f"{n_train:,} examples; includes saving")
    if wanted("generate"):
        lora = work / "lora"
        if not (lora / "adapter_config.json").exists():
            raise SystemExit(f"no adapter in {lora}: run the train stage (with this --work) first")
        # About 3,750 cases at every size (a shard of 1/N of the test split): the stage measures what
        # the archive's size does to a generation job (index, streamed split), not decoding speed.
        shards = max(1, n // 25_000)
        output = work / "generated.jsonl"
        output.unlink(missing_ok=True)  # a fresh job, not a resumed one
        generate = ["generate", "--model", str(work / "base"), "--adapter", str(lora), "--input",
                    str(data / "test.jsonl"), "--output", str(output), "--backend", "transformers",
                    "--shard", f"1/{shards}", "--max-new-tokens", "32", "--overwrite"]  # fmt: skip
        wall, rss, _ = run_measured(CLI + generate)
        made = sum(1 for _ in open(output, encoding="utf-8"))
        n_test = sum(1 for _ in open(data / "test.jsonl", encoding="utf-8"))
        label = "generate, one shard of the test split (LoRA k=3, random weights, 32 new tokens)"
        rows[label] = (wall, rss, f"--shard 1/{shards}: {made:,} of {n_test:,} cases, index of {n_train:,}")
        print(f"{n:,} | {label} | {wall:.1f} s | {rss:.2f} GB | {rows[label][2]}", flush=True)
        _save(args.results, n, rows)
    preds = work / "preds"
    cases = 0
    if wanted("eval") or wanted("review"):
        preds.mkdir(exist_ok=True)
        cases = json.loads(run_measured(me + ["predictions", str(data / "test.jsonl"), str(preds)])[2])["cases"]
    if wanted("eval"):
        systems = ["-p", str(preds / "first-sentence.jsonl"), "-p", str(preds / "neighbour.jsonl")]
        evaluate = ["eval", *systems, "--reference-system", "first-sentence", "--out", str(work / "eval")]
        stage("eval, 2 systems (bootstrap + permutation)", CLI + evaluate, f"{cases:,} cases each")
    if wanted("review"):
        review = ["review", "create", "--predictions", str(preds / "first-sentence.jsonl"),
                  str(preds / "neighbour.jsonl"), "--cases", "10", "--out", str(work / "study.sqlite"),
                  "--force"]  # fmt: skip
        stage("review create (2 systems, 10 cases)", CLI + review, f"from {cases:,} cases each")
    if wanted("compare"):
        config = work / "compare.yaml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "dataset": "synthetic", "split": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")},
            "reference_system": "tfidf-retrieval", "bootstrap": {"resamples": 1000, "seed": 0},
            "systems": [{"name": b, "kind": "baseline", "baseline": b}
                        for b in ("most-frequent", "tfidf-retrieval", "retrieval-consensus")]}))  # fmt: skip
        cases = sum(1 for _ in open(data / "test.jsonl", encoding="utf-8"))
        stage("compare, 3 retrieval/frequency baselines", CLI + ["compare", "--config", str(config), "--out",
              str(work / "compare"), "--overwrite"], f"{cases:,} cases, index of {n_train:,}")  # fmt: skip
    _save(args.results, n, rows)


def _save(path: Path, n: int, rows: dict) -> None:
    results = json.loads(path.read_text()) if path.exists() else {}
    # Merge: a run that skips stages keeps the rows earlier runs measured at this size.
    results.setdefault(str(n), {}).update({label: list(v) for label, v in rows.items()})
    path.write_text(json.dumps(results, indent=1))


def publish_results(path: Path, write: bool) -> None:
    """The table of every archive size measured so far."""
    results = json.loads(path.read_text())
    note = (
        "Synthetic archives from `bench/make_archive.py` (OpenI sentences shuffled and mixed, 3 reports a patient; "
        "never quality figures). Each stage is its own process; peak RSS from `wait4`. The 2 cores are shared with "
        "other agents' tests (benchmarks take `flock /tmp/radllama-bench.lock`, tests do not), so walls are upper "
        "bounds. Rows marked 'timed on' extrapolate per-query time to the whole train split."
    )
    sizes = sorted(results, key=int)
    labels = list(dict.fromkeys(label for s in sizes for label in results[s]))
    lines = ["| stage | " + " | ".join(f"{int(s):,} reports" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]  # fmt: skip
    for label in labels:
        cells = []
        for s in sizes:
            if label not in results[s]:
                cells.append("–")
                continue
            wall, rss, extra = results[s][label]
            cells.append(f"{wall:.1f} s, {rss:.2f} GB" + (f" ({extra})" if extra else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    publish(TITLE, note, "\n".join(lines), write=write)


if __name__ == "__main__":
    main()
