"""Issue #29: where a SmolLM2 LoRA step's time goes, one recipe knob at a time, in one run.

    python bench/bench_smollm2_train_cost.py --config runs/sweep/v3.yaml [--steps 12] [--no-write]

Runs the recipe (``radllama.train.recipes.run``, as ``radllama train`` does) for ``--steps`` optimiser steps
from the same examples, once as written and once per variant below (each a ``key=value`` override), with no
validation and no checkpoints, and reports seconds per optimiser step (the trainer's own clock over its loop,
first step included), tokens per second and the padding fraction. The variants are the knobs #29 names
(bf16 autocast, sequence length, the LoRA's target modules and rank) and the micro-batch size. Logits are
computed only from the first answer token in every variant (``radllama.train.batch``), so that saving is not
a row here. Nothing is judged on quality: a variant's validation and dev figures need a whole training run
(``bench/sweep_smollm2.py``). Time it alone on a quiet machine: every run uses all cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.train.config import load_config  # noqa: E402
from radllama.train.recipes import run  # noqa: E402

TITLE = "Issue #29: where a SmolLM2 LoRA step's time goes (bench_smollm2_train_cost.py)"
VARIANTS: dict[str, list[str]] = {
    "as written": [],
    "fp32 (no bf16 autocast)": ["optim.autocast=off"],
    "max_seq_len 192": ["data.max_seq_len=192"],
    "micro-batch 8 (two per step)": ["optim.micro_batch_size=8"],
    "q_proj/v_proj only, r=16": ["lora.target_modules=[q_proj,v_proj]"],
    "q_proj/v_proj, r=8 alpha 16 (the paper's LoRA)": [
        "lora.target_modules=[q_proj,v_proj]",
        "lora.r=8",
        "lora.alpha=16",
    ],  # fmt: skip
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="a SmolLM2 LoRA recipe (e.g. runs/sweep/v3.yaml)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), help="run only these variants")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    rows = ["| variant | overrides | s per step | × as written | tokens/s | padding |", "|---|---|---:|---:|---:|---:|"]
    base_s = None
    work = Path(tempfile.mkdtemp(prefix="radllama-train-cost-"))
    try:
        for name, extra in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            out = work / "run"
            shutil.rmtree(out, ignore_errors=True)
            overrides = [f"output_dir={out}", f"optim.max_steps={args.steps}", "data.validation=null",
                         "checkpoint.every_steps=0", *extra]  # fmt: skip
            cfg = load_config(args.config, overrides)
            summary = run(cfg)
            per_step = summary["seconds"] / summary["steps"]
            base_s = per_step if name == "as written" else base_s  # ratios only against the recipe as written
            rows.append(f"| {name} | {' '.join(f'`{e}`' for e in extra) or '–'} | {per_step:.2f} | "
                        f"{f'{per_step / base_s:.2f}' if base_s else '–'} | {summary['tokens_per_second']:.0f} | "
                        f"{summary['padding_fraction']:.1%} |")  # fmt: skip
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    note = (f"Recipe `{args.config}`, {args.steps} optimiser steps per variant from the same examples (the first "
            "steps of its shuffled epoch), no validation, no checkpoints; seconds per step from the trainer's own "
            "clock (its summary), first step included.")  # fmt: skip
    publish(TITLE, note, "\n".join(rows), write=not args.no_write)


if __name__ == "__main__":
    main()
