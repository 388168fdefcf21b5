"""The training loop shared by both recipes: AdamW, warmup + cosine, gradient accumulation
to the global batch, loss normalised by the number of target tokens, optional bf16 autocast,
validation with the best checkpoint and early stopping (radllama.train.evaluation),
checkpoint/resume.

Distributed training is the same loop under ``accelerate launch`` or ``torchrun``: each
process takes its share of every global batch; gradients are averaged by DDP, FSDP2 or
DeepSpeed (radllama.train.parallel).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from radllama.errors import RadLlamaError
from radllama.progress import progress_bar
from radllama.train.batch import base_weights, collate, masked, token_loss_sum
from radllama.train.checkpoint import (
    WEIGHTS_FILE,
    finish_checkpoint,
    fresh_tmp_dir,
    incomplete_checkpoints,
    latest_checkpoint,
    load_state,
    resume_differences,
    rng_file,
    save_rank_rng,
    set_rng_state,
    tmp_dir,
)
from radllama.train.config import OptimArgs
from radllama.train.evaluation import (
    BEST_DIR,
    BEST_FILE,
    BestTracker,
    Validation,
    due,
    loss_sum,
    recover_best,
    rouge1_sum,
    write_best,
)
from radllama.train.example_table import ExampleTable
from radllama.train.parallel import Parallel, rank_micro_batches


@dataclass
class LoopResult:
    """What a finished run reports."""

    steps: int
    final_loss: float
    tokens_seen: int  # tokens processed (incl. prompt and padding) in this process
    target_tokens: int  # tokens that carried loss, all processes
    padded_tokens: int  # padding positions processed, this process
    seconds: float
    losses: list[float]
    planned_steps: int = 0  # steps the schedule was built for (more than ``steps`` after early stopping)
    evaluation: BestTracker | None = None  # the validation record (None without data.validation)
    stopped_early: bool = False
    eval_seconds: float = 0.0  # of ``seconds``, spent evaluating (and saving best/)
    resumed_at_step: int = 0  # 0: not resumed
    # ``seconds`` covers the steps from this one on: 0, unless the run resumed from a checkpoint that kept no time
    # (written before checkpoints kept it); time between the last checkpoint and an interruption is never counted.
    timed_from_step: int = 0
    timed_tokens: int = 0  # of ``tokens_seen``, those processed in the timed steps
    autocast: str = "off"  # what optim.autocast ran as ("auto" resolved for this device)


# Global batches whose examples are grouped by length together (see step_indices).
LENGTH_POOL_STEPS = 16


def step_indices(
    n_examples: int, batch_size: int, seed: int, step: int, lengths: np.ndarray | None = None
) -> list[int]:
    """Example indices of global step ``step``: a fresh seeded permutation each epoch.

    With ``lengths`` that differ, each run of ``LENGTH_POOL_STEPS`` batches of the permutation
    is sorted by length and cut into batches again, taken in a seeded shuffled order: each
    global batch holds similar lengths (little padding), which examples share a pool stays
    random, and every example is still seen once an epoch. Equal lengths (packed pretraining
    blocks) keep the plain permutation.

    Being a pure function of (seed, step) is what makes resume exact: no sampler state.
    """
    per_epoch = max(1, n_examples // batch_size)
    epoch, pos = divmod(step, per_epoch)
    order = np.random.default_rng(seed + epoch).permutation(n_examples)
    if lengths is None or np.ptp(lengths) == 0:
        return order[pos * batch_size : (pos + 1) * batch_size].tolist()
    first = pos - pos % LENGTH_POOL_STEPS
    last = min(first + LENGTH_POOL_STEPS, per_epoch)
    pool = order[first * batch_size : last * batch_size]
    pool = pool[np.argsort(lengths[pool], kind="stable")]
    k = np.random.default_rng([seed, epoch, first]).permutation(last - first)[pos - first]
    return pool[k * batch_size : (k + 1) * batch_size].tolist()


def total_steps(n_examples: int, args: OptimArgs) -> int:
    if args.max_steps:
        return args.max_steps
    return max(1, math.ceil(args.epochs * max(1, n_examples // args.batch_size)))


def autocast_context(mode: str, device: torch.device) -> AbstractContextManager:
    """``optim.autocast``: bf16 matmuls in forward and loss; weights and gradients keep their dtype."""
    mode = resolved_autocast(mode, device)
    if mode == "off":
        return nullcontext()
    if mode != "bf16":
        raise RadLlamaError(f"optim.autocast must be off, bf16 or auto, not {mode!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RadLlamaError("optim.autocast=bf16: this GPU does not support bfloat16")
    if device.type == "cpu" and not native_bf16(device):
        # Without AVX-512 BF16 or AMX, PyTorch multiplies bfloat16 in a generic loop, several times slower
        # than fp32: the speed bf16 was chosen for is not there.
        warnings.warn(
            "optim.autocast=bf16 on a CPU without native bfloat16 matmuls (AVX-512 BF16 or AMX): slower than "
            "fp32 here; set optim.autocast=auto or off",
            stacklevel=2,
        )
    return torch.autocast(device.type, dtype=torch.bfloat16)


def resolved_autocast(mode: str, device: torch.device) -> str:
    """``auto`` becomes bf16 where the device multiplies bfloat16 natively, else off; other modes stay."""
    if mode == "auto":
        return "bf16" if native_bf16(device) else "off"
    return mode


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 at hardware speed: a GPU with bf16, a CPU with AVX-512 BF16 or
    AMX (oneDNN's own test; an AVX2-only CPU answers False)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build_optimizer(model: Any, args: OptimArgs) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; norms and biases are not decayed."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],  # no empty group (LoRA has no 1-d weights; ZeRO drops them)
        lr=args.lr,
        betas=(0.9, 0.95),
        # One fused kernel over all parameters: the default per-tensor loop cost a third of
        # every radllama-mini step on CPU (py-spy). Fused AdamW needs floating-point params.
        fused=all(p.is_floating_point() for p in trainable),
    )


def train(
    model: Any,
    examples: ExampleTable,
    args: OptimArgs,
    *,
    pad_id: int,
    seed: int,
    output_dir: Path,
    save_weights: Callable[[Path, dict | None], None],
    config_yaml: str,
    accelerator: Accelerator,
    checkpoint_every: int = 0,
    keep_last: int = 2,
    resume: bool = False,
    log_every: int = 5,
    parallel: str = "ddp",
    provenance: dict[str, Any] | None = None,
    validation: Validation | None = None,
) -> LoopResult:
    """Train ``model`` on ``examples``; returns losses and throughput figures.

    ``save_weights(folder, state_dict)`` writes the final model (and ``best/``) on the main
    process; ``state_dict`` is the gathered full state under FSDP, None otherwise. ``provenance``
    (data and base model hashes) is saved in every checkpoint and must match on resume.
    ``validation``: measured when due (``eval.*``), logged, the best kept, early stopping.
    """
    par = Parallel(accelerator, parallel)
    provenance = provenance or {}
    if validation is not None and validation.settings.rouge_samples and par.mode == "fsdp":
        raise RadLlamaError(
            "eval.rouge_samples under parallel=fsdp: generating from sharded weights is not supported; "
            "set eval.rouge_samples=0 (validation loss still works) or use parallel=ddp"
        )
    tracker = BestTracker.from_settings(validation.settings) if validation is not None else None
    autocast = resolved_autocast(args.autocast, accelerator.device)
    precision = autocast_context(autocast, accelerator.device)
    if args.base_mix:
        base_weights(model)  # a full fine-tune has no base to mix: say so before the first step
    model = par.shard(model)
    optimizer = build_optimizer(model, args)
    steps = total_steps(len(examples), args)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(args.warmup_ratio * steps),
        num_training_steps=steps,
        min_lr_rate=args.min_lr_ratio,
    )
    model, optimizer = par.prepare(model, optimizer, args.batch_size, args.micro_batch_size, args.grad_clip)
    # Weights are initialised alike on every rank (same seed); from here each other rank draws its
    # own dropout masks from a stream of (seed, rank) (rank 0 goes on with the seed's stream, so a
    # one-process run is unchanged). Checkpoints save each rank's state and resume restores it.
    if accelerator.process_index > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, accelerator.process_index]).generate_state(1)[0]))
    start, losses = 0, []
    counters = {"tokens_seen": 0, "padded_tokens": 0, "target_tokens": 0, "seconds": 0.0, "eval_seconds": 0.0}
    timed_from = 0
    if resume:
        state = _resume(output_dir, par, model, optimizer, scheduler, config_yaml, provenance)
        if state is not None:
            start, losses = state["step"], state["losses"]
            counters = {k: state.get(k, 0) for k in counters}
            timed_from = 0 if "seconds" in state else start
            if tracker is not None and state.get("eval"):
                tracker = BestTracker.from_state(state["eval"])
            _note_newer_best(output_dir, accelerator, start)
            accelerator.print(f"resumed at step {start}/{steps}")

    rank, world = accelerator.process_index, accelerator.num_processes
    lengths = examples.lengths
    tokens_seen, padded, target_total = counters["tokens_seen"], counters["padded_tokens"], counters["target_tokens"]
    per_epoch = max(1, len(examples) // args.batch_size)  # as step_indices counts epochs
    done, stopped, eval_seconds = start, False, float(counters["eval_seconds"])
    timed_tokens_before = tokens_seen if timed_from else 0
    model.train()
    t0 = time.perf_counter() - float(counters["seconds"])  # a resumed run goes on with the time it had spent
    with progress_bar() as bar:
        task = bar.add_task("train", total=steps, completed=start)
        for step in range(start, steps):
            idx = step_indices(len(examples), args.batch_size, seed, step, lengths)
            micro = rank_micro_batches(idx, rank, world, args.micro_batch_size)
            n_target = int(examples.targets[idx].sum())
            target_total += n_target
            step_loss = 0.0
            for j, chunk in enumerate(micro):
                # An empty chunk pads a short rank (rank_micro_batches): one example, every label masked.
                rows = examples.rows(chunk) if chunk else [masked(examples[idx[0]])]
                batch = {k: v.to(accelerator.device) for k, v in collate(rows, pad_id).items()}
                if chunk:
                    tokens_seen += batch["input_ids"].numel()
                    padded += int((batch["attention_mask"] == 0).sum())
                with par.sync_context(model, j == len(micro) - 1):
                    with precision:  # forward and loss only; backward runs outside, as autocast asks
                        micro_loss = token_loss_sum(model, batch, args.base_mix)
                    # Every backend averages gradients over processes, so scale by world size to
                    # get the global sum divided by the global number of target tokens.
                    par.backward(model, micro_loss * world / max(1, n_target))
                step_loss += micro_loss.item()
            par.optimizer_step(model, optimizer, args.grad_clip)
            scheduler.step()
            loss_t = torch.tensor([step_loss], device=accelerator.device)
            step_mean = accelerator.reduce(loss_t, reduction="sum").item() / max(1, n_target)
            losses.append(step_mean)
            bar.update(task, advance=1, description=f"train loss {step_mean:.3f}")
            done = step + 1
            if log_every and done % log_every == 0:
                _log(
                    output_dir,
                    accelerator,
                    {"step": done, "loss": step_mean, "lr": scheduler.get_last_lr()[0]},
                )
            if validation is not None and tracker is not None:
                loss_due, rouge_due = due(done, steps, per_epoch, validation.settings)
                if loss_due:
                    began = time.perf_counter()
                    row = _evaluate(validation, par, model, pad_id, args.micro_batch_size, done, rouge_due)
                    improved = tracker.update(row)
                    _log(output_dir, accelerator, {**row, "best": improved})
                    bar.update(task, description=_eval_text(row))
                    if improved and validation.settings.keep_best:
                        _save_best(output_dir, par, model, save_weights, row, tracker.metric)
                    stopped = tracker.should_stop and done < steps
                    eval_seconds += time.perf_counter() - began
            if checkpoint_every and done % checkpoint_every == 0 and done < steps:
                state = {
                    "losses": losses,
                    "seed": seed,
                    "n_examples": len(examples),
                    "batch_size": args.batch_size,
                    "world_size": world,
                    "provenance": provenance,
                    # Data position is the step itself: step_indices is a pure function of it.
                    "tokens_seen": tokens_seen,
                    "padded_tokens": padded,
                    "target_tokens": target_total,
                    "eval": tracker.state() if tracker is not None else None,  # best so far, patience used
                    "seconds": time.perf_counter() - t0,
                    "eval_seconds": eval_seconds,
                }
                _checkpoint(output_dir, done, par, model, optimizer, scheduler, state, config_yaml, keep_last)
            if stopped:
                best = "none finite" if tracker.best is None else f"{tracker.best:.4f} at step {tracker.best_step}"
                accelerator.print(
                    f"early stopping at step {done}: {tracker.metric} has not improved for {tracker.patience} "
                    f"evaluations (best {best})"
                )
                break
    seconds = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    full = par.full_state(model)  # a collective under FSDP: every rank takes part
    if accelerator.is_main_process:
        save_weights(Path(output_dir), full)
    accelerator.wait_for_everyone()
    final = losses[-1] if losses else float("nan")
    return LoopResult(
        done, final, tokens_seen, target_total, padded, seconds, losses, steps, tracker, stopped, eval_seconds,
        resumed_at_step=start, timed_from_step=timed_from, timed_tokens=tokens_seen - timed_tokens_before,
        autocast=autocast,
    )  # fmt: skip


def _evaluate(
    validation: Validation, par: Parallel, model: Any, pad_id: int, micro_batch_size: int, step: int, rouge: bool
) -> dict:
    """One evaluation row (the same on every rank): validation loss, and ROUGE-1 when ``rouge``.

    Weights are measured as they are (model.dtype, no autocast): the figures describe the model
    that is saved. Evaluation draws no random numbers (eval mode, greedy); fork_rng makes sure,
    so evaluating never changes what training computes, and resume stays exact.
    """
    acc = par.accelerator
    rank, world = acc.process_index, acc.num_processes
    model.eval()
    try:
        with torch.random.fork_rng(devices=[acc.device.index or 0] if acc.device.type == "cuda" else []):
            sums = list(loss_sum(model, validation.examples, micro_batch_size, pad_id, acc.device, rank, world))
            if rouge:
                sums += rouge1_sum(validation, par.unwrap(model), rank, world)
    finally:
        model.train()
    total = acc.reduce(torch.tensor(sums, dtype=torch.float64, device=acc.device), reduction="sum").tolist()
    row: dict[str, Any] = {"step": step, "val_loss": total[0] / max(1.0, total[1]), "val_tokens": int(total[1])}
    if rouge:
        row |= {"val_rouge1": total[2] / max(1.0, total[3]), "rouge_samples": int(total[3])}
    return row


def _eval_text(row: dict) -> str:
    rouge = f" R-1 {row['val_rouge1']:.3f}" if "val_rouge1" in row else ""
    return f"val loss {row['val_loss']:.3f}{rouge}"


def _save_best(output_dir: Path, par: Parallel, model: Any, save_weights: Callable, row: dict, metric: str) -> None:
    """``output_dir/best/``: this step's weights, saved as the final model is, with ``best.json``."""
    full = par.full_state(model)  # a collective under FSDP: every rank takes part
    if par.accelerator.is_main_process:
        write_best(Path(output_dir), save_weights, full, {**row, "metric": metric})
    par.accelerator.wait_for_everyone()


def _note_newer_best(output_dir: Path, accelerator: Accelerator, step: int) -> None:
    """A ``best/`` saved after the checkpoint by the interrupted run: the rerun's evaluations
    (the same computations) decide it again."""
    found = Path(output_dir) / BEST_DIR / BEST_FILE
    if accelerator.is_main_process:
        recover_best(output_dir)  # a swap the interrupted run left half done
    if accelerator.is_main_process and found.is_file():
        saved = json.loads(found.read_text(encoding="utf-8")).get("step", 0)
        if saved > step:
            accelerator.print(f"{found.parent} is from step {saved}, after the checkpoint: evaluations from step "
                              f"{step} on decide it again")  # fmt: skip


def _checkpoint(
    output_dir: Path,
    step: int,
    par: Parallel,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: dict,
    config_yaml: str,
    keep_last: int,
) -> None:
    """Every rank adds its RNG state (and DeepSpeed shard); the main process completes and renames."""
    accelerator = par.accelerator
    weights = par.trainable_state(model)  # collectives under FSDP: all ranks, in this order
    optimizer_state = par.optimizer_state(model, optimizer)
    tmp = tmp_dir(output_dir, step)
    if accelerator.is_main_process:
        fresh_tmp_dir(output_dir, step)
    accelerator.wait_for_everyone()
    save_rank_rng(tmp, accelerator.process_index)
    par.save_engine(model, tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        finish_checkpoint(output_dir, step, tmp, weights, optimizer_state, scheduler, state, config_yaml, keep_last)
    accelerator.wait_for_everyone()


def _resume(
    output_dir: Path,
    par: Parallel,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    config_yaml: str,
    provenance: dict[str, Any],
) -> dict | None:
    """Load the newest complete checkpoint into model, optimiser, scheduler and this rank's RNG,
    after checking it was written by the same run (config, data, base model, process count)."""
    accelerator = par.accelerator
    for bad in incomplete_checkpoints(output_dir):
        accelerator.print(f"ignoring incomplete checkpoint {bad} (no trainer_state.json: the save was cut off)")
    ckpt = latest_checkpoint(output_dir)
    if ckpt is None:
        accelerator.print(f"no checkpoint in {output_dir}: starting from step 0")
        if accelerator.is_main_process:
            _trim_log(output_dir, 0)  # the interrupted run's rows are all redone
        accelerator.wait_for_everyone()
        return None
    state = load_state(ckpt, optimizer_file=par.mode != "zero2")
    diffs = resume_differences(ckpt, config_yaml, provenance, accelerator.num_processes)
    if diffs:
        raise RadLlamaError(
            f"{ckpt} was written by a different run, so resuming would not give its result: {'; '.join(diffs)}. "
            "Resume with the same config, data and number of processes, or use a new output_dir"
        )
    weights = torch.load(ckpt / WEIGHTS_FILE, weights_only=True)
    if not par.load_trainable(model, weights):
        raise RadLlamaError(f"{ckpt / WEIGHTS_FILE} does not match this model (LoRA settings or base changed?)")
    par.load_optimizer(model, optimizer, ckpt)
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / rng_file(accelerator.process_index), weights_only=False))
    if accelerator.is_main_process:
        _trim_log(output_dir, state["step"])
    accelerator.wait_for_everyone()
    accelerator.print(f"resuming from {ckpt}")
    return state


def _trim_log(output_dir: Path, step: int) -> None:
    """Drop log rows written after the checkpoint by the interrupted run (they are redone)."""
    from radllama.io import atomic_write_text

    log = Path(output_dir) / "train_log.jsonl"
    if log.is_file():
        rows = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [r for r in rows if _log_step(r) <= step]
        atomic_write_text(log, "".join(r + "\n" for r in kept))


def _log_step(row: str) -> float:
    try:
        return json.loads(row).get("step", 0)
    except json.JSONDecodeError:  # a line cut by the kill
        return math.inf


def _log(output_dir: Path, accelerator: Accelerator, row: dict) -> None:
    if accelerator.is_main_process:
        with (Path(output_dir) / "train_log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
