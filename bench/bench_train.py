"""Training speed of radllama-mini: tokens/s and achieved FLOP/s of both stages vs a large fp32 matmul.

    python bench/bench_train.py [--train runs/demo/data/train.jsonl] [--steps 30] [--out /tmp/radllama-bench-train]

In one run: (1) the FLOP/s of a 2048×2048 fp32 matmul repeated for a few seconds (the
machine's practical ceiling for the dense work training does); (2) the base stage
(``src/radllama/configs/mini-base.yaml``) for ``--steps`` optimiser steps; (3) the LoRA stage
(``mini-lora.yaml``) on that base for ``--steps`` steps. Both through ``radllama.train.recipes``
exactly as ``radllama train`` runs them, output under ``--out``.

FLOPs counted (parameter matmuls only; attention score/value matmuls excluded, stated below):

* full training: 6·N·tokens (forward 2N, backward 4N), N = all parameters (the tied embedding
  is the LM head's matmul);
* LoRA: (4·N_base + 6·N_lora)·tokens: the frozen base runs forward (2N) and backward to its
  inputs only (2N, no weight gradients); the adapters train in full (6·N_lora).

``tokens`` are the positions processed, padding included (that is the work the CPU did);
the padding fraction is reported beside it. Targets: base stage ≥ 50% of the matmul rate;
padding ≤ 10% of processed tokens.

    python bench/bench_train.py --autocast [--validation VALIDATION_JSONL] [--lora-base runs/demo/mini/base]

instead compares ``optim.autocast=off`` (fp32) with ``optim.autocast=bf16`` in the same session:
both stages for ``--steps`` steps each way, tokens/s of training (evaluation time excluded) and
the validation loss after those steps (plus greedy ROUGE-1 on the first 64 validation reports for
the LoRA stage), measured in fp32 on the weights each run saved. The LoRA stage starts from
``--lora-base`` (the demo's trained base), not from the 30-step base.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.demo import CONFIG_DIR  # noqa: E402
from radllama.train.config import load_config  # noqa: E402
from radllama.train.recipes import run  # noqa: E402

TITLE = "Training: radllama-mini tokens/s and FLOP/s (bench_train.py)"
TITLE_AUTOCAST = "Training: fp32 vs bf16 autocast, radllama-mini (bench_train.py --autocast)"


def matmul_flops(n: int = 2048, seconds: float = 4.0) -> float:
    """FLOP/s of repeated n×n fp32 matmuls (after a warm-up) for about ``seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    iters, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b, out=out)
        iters += 1
    return 2 * n**3 * iters / (time.perf_counter() - started)


def stage(config: str, overrides: list[str]) -> dict:
    """Run one recipe with ``overrides``; its train summary."""
    return run(load_config(CONFIG_DIR / config, overrides))


def attention_share(cfg_path: str, seq: int) -> float:
    """Attention score/value matmul FLOPs per token as a share of 2N (what the count leaves out)."""
    cfg = load_config(CONFIG_DIR / cfg_path, [])
    m = cfg.mini
    params = m.num_hidden_layers * (4 * m.hidden_size**2 + 3 * m.hidden_size * m.intermediate_size)
    params += m.vocab_size * m.hidden_size
    return (2 * m.num_hidden_layers * seq * m.hidden_size) / (2 * params)  # Kaplan et al.: 2·L·n_ctx·d forward


def autocast_rows(args: argparse.Namespace) -> None:
    """fp32 vs bf16 autocast on both stages, in one session; a row per run."""
    common = [f"data.train={args.train}", f"optim.max_steps={args.steps}", "checkpoint.every_steps=0"]
    # Evaluated once, at the last step (an "epoch" is longer than the run); fp32 weights either way.
    common += [f"data.validation={args.validation}", "eval.every_steps=0"]
    stages = {
        "base (pretraining)": ("mini-base.yaml", ["optim.epochs=1", "eval.rouge_samples=0"]),
        "LoRA (instruction tuning)": ("mini-lora.yaml", [f"model.path={args.lora_base}", "eval.rouge_samples=64"]),
    }
    rows = [
        "| stage | autocast | steps | train seconds | tokens/s | vs fp32 | final train loss | validation loss "
        "| validation ROUGE-1 (n) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (config, extra) in stages.items():
        if config.split("-")[1].split(".")[0] not in args.stages.split(","):
            continue
        fp32_rate = None
        for mode in ("off", "bf16"):
            out = args.out / f"{config.split('.')[0]}-{mode}"
            s = stage(config, [*common, *extra, f"output_dir={out}", f"optim.autocast={mode}"])
            val = s["validation"]["final"]
            rate = s["tokens_per_second"]
            fp32_rate = fp32_rate or rate
            rouge = f"{val['val_rouge1']:.4f} ({val['rouge_samples']})" if "val_rouge1" in val else "–"
            rows.append(
                f"| {name} | {'bf16' if mode == 'bf16' else 'off (fp32)'} | {s['steps']} | "
                f"{s['seconds'] - s['eval_seconds']:.1f} | {rate:,.0f} | {rate / fp32_rate:.2f}× | "
                f"{s['final_loss']:.4f} | {val['val_loss']:.4f} | {rouge} |"
            )
    note = (
        f"Configs `mini-base.yaml` and `mini-lora.yaml` as shipped, `optim.max_steps={args.steps}` each run "
        f"(base: `optim.epochs=1`; LoRA from `{args.lora_base}`), `data.train={args.train}`, validation loss on "
        f"all of `{args.validation}` after the last step, computed in fp32 (no autocast) on the trained weights; "
        f"{torch.get_num_threads()} torch threads, one run each, fp32 then bf16, on a machine shared with other "
        "jobs. The optimiser's master weights are fp32 in both (autocast changes only the forward/loss compute)."
    )
    publish(TITLE_AUTOCAST, note, "\n".join(rows), write=not args.no_write)


def interleaved_steps(rounds: int = 12) -> None:
    """fp32 and bf16-autocast training steps of the mini-base.yaml model, alternating in one process
    (order swapped every round, first 2 rounds dropped): both see the same machine load. Prints only."""
    import statistics

    from radllama.models.mini import build_model, train_tokenizer
    from radllama.train.batch import token_loss_sum
    from radllama.train.loop import autocast_context, build_optimizer
    from radllama.train.tiny import INVENTED_TEXT

    cfg = load_config(CONFIG_DIR / "mini-base.yaml", [])
    tok = train_tokenizer(INVENTED_TEXT * 50, cfg.mini.vocab_size)
    torch.manual_seed(0)
    ids = torch.randint(3, len(tok), (cfg.optim.micro_batch_size, cfg.data.max_seq_len))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    models = {}
    for mode in ("off", "bf16"):
        model = build_model(cfg.mini, tok, seed=0).train()
        models[mode] = (model, build_optimizer(model, cfg.optim), [])
    for r in range(rounds):
        for mode in ("off", "bf16") if r % 2 == 0 else ("bf16", "off"):
            model, opt, times = models[mode]
            began = time.perf_counter()
            with autocast_context(mode, torch.device("cpu")):
                loss = token_loss_sum(model, batch) / ids.numel()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if r >= 2:
                times.append(time.perf_counter() - began)
    median = {mode: statistics.median(t) for mode, (_, _, t) in models.items()}
    for mode, m in median.items():
        print(f"{mode}: median step {m:.3f} s over {rounds - 2} steps, {ids.numel() / m:,.0f} tokens/s")
    print(f"bf16 rate / fp32 rate: {median['off'] / median['bf16']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="runs/demo/data/train.jsonl")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("/tmp/radllama-bench-train"))
    ap.add_argument("--matmul-seconds", type=float, default=4.0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--autocast", action="store_true", help="compare fp32 with bf16 autocast instead")
    ap.add_argument("--validation", default="runs/demo/data/validation.jsonl")
    ap.add_argument("--lora-base", default="runs/demo/mini/base")
    ap.add_argument("--stages", default="base,lora", help="with --autocast: which stages (base, lora)")
    ap.add_argument("--interleaved", action="store_true", help="fp32 vs bf16 steps alternating in one process")
    args = ap.parse_args()

    if args.interleaved:
        interleaved_steps()
        return
    shutil.rmtree(args.out, ignore_errors=True)  # fresh runs: never resume a previous bench
    if args.autocast:
        autocast_rows(args)
        return
    peak = matmul_flops(seconds=args.matmul_seconds)
    common = [f"data.train={args.train}", f"optim.max_steps={args.steps}", "checkpoint.every_steps=0"]
    base = stage(
        "mini-base.yaml",
        [*common, f"output_dir={args.out / 'base'}", "optim.epochs=1"],  # one neighbour chain is enough
    )
    lora = stage("mini-lora.yaml", [*common, f"output_dir={args.out / 'lora'}", f"model.path={args.out / 'base'}"])

    n_base = base["parameters"]
    n_lora = lora["trainable_parameters"]
    n_frozen = lora["total_parameters"] - n_lora
    rows = [
        "| stage | steps | seconds | tokens/s | FLOPs per token | achieved GFLOP/s | vs matmul | target "
        "| padding | padding target |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|---|",
        f"| fp32 matmul 2048×2048 (reference) | – | {args.matmul_seconds:.0f} | – | 2·n³ per product | "
        f"{peak / 1e9:.1f} | 100% | – | – | – |",
    ]
    for name, s, per_token, formula in (
        ("base (full pretraining)", base, 6 * n_base, f"6·N, N = {n_base / 1e6:.2f}M"),
        (
            "LoRA (instruction tuning)",
            lora,
            4 * n_frozen + 6 * n_lora,
            f"4·N_base + 6·N_lora = 4·{n_frozen / 1e6:.2f}M + 6·{n_lora / 1e6:.3f}M",
        ),
    ):
        flops = per_token * s["tokens_per_second"]
        share = flops / peak
        target = "≥ 50%: " + ("met" if share >= 0.5 else "NOT met") if s is base else "–"
        pad = s["padding_fraction"]
        rows.append(
            f"| {name} | {s['steps']} | {s['seconds']:.1f} | {s['tokens_per_second']:,.0f} | {formula} | "
            f"{flops / 1e9:.1f} | {100 * share:.0f}% | {target} | {100 * pad:.1f}% | "
            f"≤ 10%: {'met' if pad <= 0.10 else 'NOT met'} |"
        )
    table = "\n".join(rows)
    note = (
        f"Configs `mini-base.yaml` and `mini-lora.yaml` as shipped, `optim.max_steps={args.steps}` "
        f"(base: `optim.epochs=1`, one neighbour-ordered pass), `data.train={args.train}`, "
        f"{torch.get_num_threads()} torch threads. Attention score/value matmuls are not counted: for the base "
        f"stage's 256-token blocks they would add about {100 * attention_share('mini-base.yaml', 256):.0f}% "
        "to the FLOPs."
    )
    print(json.dumps({"matmul_gflops": peak / 1e9, "base": base, "lora": lora}, indent=2))
    publish(TITLE, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
