"""Generation speed: radllama-mini impressions/s on the OpenI test split, naive loop vs batched engine.

    python bench/bench_generate.py [--model runs/demo/mini/base] [--adapter runs/demo/mini/lora]
        [--split runs/demo/data/test.jsonl] [--max-new-tokens 64] [--batch-size 64]

In one run, on the same prompts (the model's own prompt style, retrieval included):

* **naive**: ``model.generate`` called once per case (no batching, no padding);
* **engine**: ``generate_many`` (length-sorted batches, fast greedy path), the default;
* variants, each on the whole split unless stated: batch size sweep; the engine without its
  shared-prefix prefill; the engine without its fast greedy path (``model.generate`` per
  batch: finished rows keep decoding as padding); ``model.generate`` with a static KV cache;
  unsorted batches; 1 torch thread; dynamic int8 ``Linear`` layers
  (``torch.ao.quantization.quantize_dynamic``); bf16 (on a subset: slow on CPUs without
  bf16 units); optionally ``torch.compile``.

Per-case latency: the wall time of the call that produced the case (its ``generate`` call in
the naive loop, its batch in the engine). Greedy texts of every variant are compared with the
naive loop's; where they differ, the first differing token is located and the naive model's
top-2 logit margin there is reported (a tiny margin = a numerical near-tie, not a bug).
Quality of lossy variants: ROUGE-1 against the references (``rouge_many``), which must stay
within 0.005 of fp32. Targets: ≥ 100 impressions/s and ≥ 8× the naive loop.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.evaluate.rouge import rouge_many  # noqa: E402
from radllama.generate.engine import GenerationSettings, generate_batch, generate_many  # noqa: E402
from radllama.generate.impressions import impression_prompts  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402
from radllama.models.loading import load_for_inference  # noqa: E402

TITLE = "Generation: radllama-mini impressions/s, naive loop vs batched engine (bench_generate.py)"
TARGET_RATE, TARGET_SPEEDUP, ROUGE_TOLERANCE = 100.0, 8.0, 0.005


@dataclass
class Run:
    """One way of decoding the prompts: texts, token ids, per-case latency, wall time."""

    name: str
    texts: list[str]
    seconds: float
    latencies: list[float]
    tokens: list[list[int]] = field(default_factory=list)
    note: str = ""
    lossy: bool = False  # different arithmetic (int8, bf16): text differences are expected

    @property
    def rate(self) -> float:
        return len(self.texts) / self.seconds


def _postprocess(tokenizer: Any, row: list[int]) -> tuple[str, list[int]]:
    """Text as the engine makes it (up to EOS, special tokens dropped, stripped) and the ids kept."""
    eos = tokenizer.eos_token_id
    ids = row[: row.index(eos)] if eos in row else row
    return tokenizer.decode(ids, skip_special_tokens=True).strip(), ids


@torch.inference_mode()
def naive_loop(model: Any, tokenizer: Any, prompts: Sequence[str], max_new: int) -> Run:
    """``model.generate`` once per case."""
    texts, tokens, lat = [], [], []
    started = time.perf_counter()
    for p in prompts:
        t0 = time.perf_counter()
        enc = tokenizer([p], return_tensors="pt", add_special_tokens=False)
        out = model.generate(
            **enc,
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text, ids = _postprocess(tokenizer, out[0, enc["input_ids"].shape[1] :].tolist())
        lat.append(time.perf_counter() - t0)
        texts.append(text)
        tokens.append(ids)
    return Run("naive: `model.generate` per case", texts, time.perf_counter() - started, lat, tokens)


def engine_run(
    name: str, model: Any, tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings, batch: int
) -> Run:
    """``generate_many``; a case's latency is the wall time of its batch."""
    lat = [0.0] * len(prompts)
    mark = [time.perf_counter()]

    def on_batch(indices: list[int], _done: list) -> None:
        now = time.perf_counter()
        for i in indices:
            lat[i] = now - mark[0]
        mark[0] = now

    started = mark[0]
    done = generate_many(model, tokenizer, prompts, settings, batch_size=batch, on_batch=on_batch)
    return Run(name, [c.text for c in done], time.perf_counter() - started, lat)


def chunked_run(
    name: str, prompts: Sequence[str], batch: int, decode: Callable[[list[str]], list[str]], sort: bool = True
) -> Run:
    """Batches of ``batch`` prompts (length-sorted by characters unless ``sort`` is false) through ``decode``."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if sort else list(range(len(prompts)))
    texts: list[str] = [""] * len(prompts)
    lat = [0.0] * len(prompts)
    started = time.perf_counter()
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        t0 = time.perf_counter()
        out = decode([prompts[i] for i in idx])
        for i, text in zip(idx, out, strict=True):
            texts[i], lat[i] = text, time.perf_counter() - t0
    return Run(name, texts, time.perf_counter() - started, lat)


def hf_generate(model: Any, tokenizer: Any, max_new: int, **extra: Any) -> Callable[[list[str]], list[str]]:
    """One ``model.generate`` call per batch, with ``extra`` generation options."""

    @torch.inference_mode()
    def decode(batch: list[str]) -> list[str]:
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc,
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
        return [_postprocess(tokenizer, row)[0] for row in out[:, enc["input_ids"].shape[1] :].tolist()]

    return decode


@torch.inference_mode()
def divergence_margin(model: Any, tokenizer: Any, prompt: str, naive_ids: list[int], other_text: str) -> float:
    """Top-2 logit margin of the (unpadded, single-row) model where ``other_text`` leaves the naive tokens."""
    other = tokenizer(other_text, add_special_tokens=False).input_ids
    k = next(
        (i for i, (a, b) in enumerate(zip(naive_ids, other, strict=False)) if a != b), min(len(naive_ids), len(other))
    )
    ids = tokenizer(prompt, add_special_tokens=False).input_ids + naive_ids[:k]
    logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def percentile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--split", type=Path, default=Path("runs/demo/data/test.jsonl"))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64, help="the engine's batch size (the default in the table)")
    ap.add_argument("--sweep", default="8,16,32,128", help="other batch sizes to try")
    ap.add_argument("--limit", type=int, help="only the first N cases")
    ap.add_argument("--bf16-cases", type=int, default=32, help="cases for the (slow) bf16 variant; 0 skips it")
    ap.add_argument("--compile", action="store_true", help="also try torch.compile (minutes of compiling)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    threads = torch.get_num_threads()
    loaded = load_for_inference(args.model, args.adapter)
    model, tok = loaded.model, loaded.tokenizer
    records = read_jsonl(args.split)[: args.limit]
    refs = [r["impression"] for r in records]
    prompts = impression_prompts(loaded, [r["findings"] for r in records])
    n_prompt_tokens = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    # Warm-up (allocator, kernel selection) on two batches' worth, and one naive call.
    generate_many(model, tok, prompts[: 2 * args.batch_size], settings, batch_size=args.batch_size)
    naive_loop(model, tok, prompts[:1], args.max_new_tokens)

    naive = naive_loop(model, tok, prompts, args.max_new_tokens)
    engine = engine_run(
        f"engine: `generate_many`, batch {args.batch_size}", model, tok, prompts, settings, args.batch_size
    )
    runs: list[Run] = [naive, engine]
    for b in [int(x) for x in args.sweep.split(",") if x]:
        runs.append(engine_run(f"engine, batch {b}", model, tok, prompts, settings, b))
    whole = GenerationSettings(max_new_tokens=args.max_new_tokens, share_prefix=False)
    runs.append(
        engine_run(
            f"engine without shared-prefix prefill, batch {args.batch_size}",
            model,
            tok,
            prompts,
            whole,
            args.batch_size,
        )
    )
    slow = GenerationSettings(max_new_tokens=args.max_new_tokens, fast_greedy=False)
    runs.append(
        engine_run(
            f"engine without fast greedy path (`model.generate` per batch), batch {args.batch_size}",
            model,
            tok,
            prompts,
            slow,
            args.batch_size,
        )
    )
    runs.append(
        chunked_run(
            f"`model.generate`, static KV cache, batch {args.batch_size}",
            prompts,
            args.batch_size,
            hf_generate(model, tok, args.max_new_tokens, cache_implementation="static"),
        )
    )

    def engine_decode(batch: list[str]) -> list[str]:
        return [c.text for c in generate_batch(model, tok, batch, settings)]

    runs.append(
        chunked_run(f"engine, unsorted batches of {args.batch_size}", prompts, args.batch_size, engine_decode, False)
    )
    torch.set_num_threads(1)
    runs.append(
        engine_run(f"engine, 1 torch thread, batch {args.batch_size}", model, tok, prompts, settings, args.batch_size)
    )
    torch.set_num_threads(threads)

    quant = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    int8 = engine_run(
        f"engine + dynamic int8 Linear, batch {args.batch_size}", quant, tok, prompts, settings, args.batch_size
    )
    int8.lossy = True
    runs.append(int8)
    del quant

    if args.bf16_cases:
        half = copy.deepcopy(model).to(torch.bfloat16)
        sub = prompts[: args.bf16_cases]
        bf = engine_run(
            f"engine + bf16 weights, batch {args.batch_size} ({len(sub)} cases)",
            half,
            tok,
            sub,
            settings,
            args.batch_size,
        )
        bf.note, bf.lossy = f"subset of {len(sub)}", True
        runs.append(bf)
        del half

    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.forward = torch.compile(compiled.forward, dynamic=True)
        t0 = time.perf_counter()
        generate_many(compiled, tok, prompts[:8], settings, batch_size=8)
        warm = time.perf_counter() - t0
        run = engine_run(
            f"engine + torch.compile(dynamic=True), batch {args.batch_size}",
            compiled,
            tok,
            prompts,
            settings,
            args.batch_size,
        )
        run.note = f"+ {warm:.0f} s compiling (not counted)"
        runs.append(run)

    # ROUGE-1 of each run that decoded every case (once per run; the engine's is the fp32 reference).
    rouge1 = {
        id(run): statistics.mean(rouge_many(run.texts, refs)["rouge1"])
        for run in runs
        if len(run.texts) == len(prompts)
    }
    r1_fp32 = rouge1[id(engine)]
    rows = [
        "| decoding | cases | seconds | impressions/s | vs naive | p50 latency s | p95 latency s | texts ≠ naive "
        "| ROUGE-1 | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    diagnoses = []
    for run in runs:
        n = len(run.texts)
        differ = [i for i in range(n) if run.texts[i] != naive.texts[i]] if run is not naive else []
        for i in differ[:20] if not run.lossy else []:
            diagnoses.append(divergence_margin(model, tok, prompts[i], naive.tokens[i], run.texts[i]))
        r1 = rouge1.get(id(run), float("nan"))
        speed = run.rate / naive.rate
        targets = ""
        if run is engine:
            targets = (
                f"≥ {TARGET_RATE:.0f}/s: {'met' if run.rate >= TARGET_RATE else 'NOT met'}; "
                f"≥ {TARGET_SPEEDUP:.0f}×: {'met' if speed >= TARGET_SPEEDUP else 'NOT met'}"
            )
        elif run is int8:
            ok = abs(r1 - r1_fp32) <= ROUGE_TOLERANCE
            targets = f"ROUGE-1 within {ROUGE_TOLERANCE} of fp32: {'yes' if ok else 'NO'}"
        rows.append(
            f"| {run.name} | {n} | {run.seconds:.2f} | {run.rate:.1f} | {speed:.1f}× | "
            f"{percentile(run.latencies, 50):.3f} | {percentile(run.latencies, 95):.3f} | {len(differ)} | "
            f"{'' if r1 != r1 else f'{r1:.4f}'} | {targets or run.note} |"
        )
    table = "\n".join(rows)
    gen_tokens = sum(len(t) for t in naive.tokens) / len(naive.tokens)
    note = (
        f"Model `{args.model}` + LoRA `{args.adapter}` merged (fp32), {len(prompts)} test cases of `{args.split}`, "
        f"prompts {statistics.mean(n_prompt_tokens):.0f} tokens on average (max {max(n_prompt_tokens)}), greedy, "
        f"at most {args.max_new_tokens} new tokens ({gen_tokens:.1f} generated per case on average, naive run), "
        f"{threads} torch threads unless stated. Latency: wall time of the call that produced the case "
        "(naive: its own `generate`; engine: its batch)."
    )
    if diagnoses:
        note += (
            " Texts of exact (fp32) variants differing from the naive loop: at the first differing token "
            f"the naive model's top-2 logit margin was at most {max(diagnoses):.2e} "
            f"(median {statistics.median(diagnoses):.2e}) over "
            f"{len(diagnoses)} checked cases."
        )
    publish(TITLE, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
