"""The two training recipes, each a short function over the shared loop.

* ``pretrain_mini``: tokenizer + radllama-mini base from scratch on training report text.
* ``lora_sft``: LoRA instruction tuning of any local causal LM (the paper's method).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radllama.canaries import CANARY_FILE, plant_canaries
from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json, atomic_write_text, ensure_writable_dir, read_jsonl
from radllama.models.loading import load_causal_lm, load_tokenizer, pick_dtype, record_base, write_retrieval_index
from radllama.models.mini import build_model, save_pretrained, train_tokenizer
from radllama.progress import console
from radllama.prompts import PromptStyle
from radllama.provenance import RECORD_FILE, file_digest
from radllama.retrieval import TfidfRetriever
from radllama.train import loop
from radllama.train.checkpoint import base_model_identity
from radllama.train.config import OptimArgs, TrainConfig, dump_config
from radllama.train.curves import CURVE_FILE, draw_training_curve
from radllama.train.evaluation import BEST_DIR, Validation, continuation_answerer, impression_answerer
from radllama.train.example_table import CACHE_DIR, ExampleTable, cached_table, content_key
from radllama.train.examples import (
    Example,
    check_tasks,
    iter_blocks,
    iter_sft_examples,
    iter_task_examples,
    nearest_reports,
    neighbour_chain,
    report_text,
)

COMPLETE_FILE = "train_summary.json"
TOKENIZER_FILE = "tokenizer.json"  # radllama-mini's, in output_dir
RUN_FILES = ("train_log.jsonl", COMPLETE_FILE, "config.yaml")  # with step-*/: what marks a training output
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_training_records(path: str, what: str = "training") -> list[dict]:
    """Training (or validation) records, checked for the two fields every recipe needs."""
    records = read_jsonl(Path(path))
    if not records:
        raise RadLlamaError(f"{path}: no {what} records")
    for i, r in enumerate(records, 1):
        if not str(r.get("findings", "")).strip() or not str(r.get("impression", "")).strip():
            raise RadLlamaError(f"{path}: record {i} lacks findings or impression")
    return records


def prepare_output_dir(out: Path, accelerator: Any, resume: bool, overwrite: bool) -> Path:
    """The run's ``output_dir``: refused when it holds another run (a second run's log rows and
    checkpoints would mix with the first's), unless ``resume`` continues that run or ``overwrite``
    deletes it. ``overwrite`` deletes only what looks like a training output."""
    if resume and overwrite:
        raise RadLlamaError("--resume and --overwrite contradict each other: choose one")
    out = Path(out)
    # The demo's stage record (provenance.json) is written before the run; it is no run of its own. Nor is
    # the examples cache (a run that stopped while building it): keyed by content, it never mixes runs.
    found = [p for p in out.iterdir() if p.name != RECORD_FILE] if out.is_dir() else []
    used = [p for p in found if p.name != CACHE_DIR]
    if used and not resume:
        if not overwrite:
            raise RadLlamaError(
                f"output_dir {out} is not empty: pass --resume to continue its run, --overwrite to delete it "
                "and start again, or choose a new output_dir"
            )
        if not any(p.name in RUN_FILES or p.name.startswith("step-") for p in used):
            raise RadLlamaError(
                f"output_dir {out} holds files that are not a training run's (no {', '.join(RUN_FILES)} or "
                "step-*/): not deleting them with --overwrite; choose a new output_dir"
            )
        accelerator.wait_for_everyone()  # every rank has looked before the main process deletes
        if accelerator.is_main_process:
            for p in found:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    accelerator.wait_for_everyone()
    return ensure_writable_dir(out)


def prompt_style(cfg: TrainConfig) -> PromptStyle:
    return PromptStyle(instruction=cfg.prompt.instruction, system=cfg.prompt.system, retrieval_k=cfg.prompt.retrieval_k)


def _accelerator() -> Any:
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _finish(cfg: TrainConfig, out: Path, result: loop.LoopResult, extra: dict, main: bool = True) -> dict:
    """Write the training curve, then the run summary last (main process only): its presence
    marks a finished run."""
    summary = {
        "recipe": cfg.recipe,
        "steps": result.steps,
        "planned_steps": result.planned_steps,
        "final_loss": result.final_loss,
        "seconds": round(result.seconds, 2),  # a resumed run's time over all its runs (see timed_from_step)
        "eval_seconds": round(result.eval_seconds, 2),
        # Training throughput: the time spent evaluating is not training.
        "tokens_per_second": round(result.timed_tokens / max(result.seconds - result.eval_seconds, 1e-9), 1),
        **({"resumed_at_step": result.resumed_at_step} if result.resumed_at_step else {}),
        **({"timed_from_step": result.timed_from_step} if result.timed_from_step else {}),
        "target_tokens": result.target_tokens,
        "padding_fraction": round(result.padded_tokens / max(1, result.tokens_seen), 4),
        "autocast": result.autocast,  # optim.autocast as it ran ("auto" resolved on this machine)
        "validation": validation_summary(cfg, result),
        **extra,
    }
    if main:
        atomic_write_text(out / "config.yaml", dump_config(cfg))
        best = summary["validation"]["best_step"] if summary["validation"] else None
        draw_training_curve(out / "train_log.jsonl", out / CURVE_FILE, best)
        atomic_write_json(out / COMPLETE_FILE, summary)
    return summary


def validation_summary(cfg: TrainConfig, result: loop.LoopResult) -> dict | None:
    """Best and final evaluation of a run with ``data.validation`` (None without)."""
    tracker = result.evaluation
    if tracker is None:
        return None
    pick = ("val_loss", "val_rouge1", "rouge_samples")
    best, last = tracker.best_row or {}, tracker.last_row or {}
    return {
        "metric": tracker.metric,
        "best_step": tracker.best_step,
        "best": {k: best[k] for k in pick if k in best},
        "best_dir": str(Path(cfg.output_dir) / BEST_DIR) if cfg.eval.keep_best and tracker.best_step else None,
        "final_step": last.get("step"),
        "final": {k: last[k] for k in pick if k in last},
        "evaluations": tracker.evaluations,
        "stopped_early": result.stopped_early,
        "rouge_samples": cfg.eval.rouge_samples,  # 0: ROUGE-1 was off
    }


def summary_line(summary: dict) -> str:
    """The one line ``radllama train`` ends with."""
    head = f"{summary['recipe']}: {summary['steps']} steps, final train loss {summary['final_loss']:.4f}"
    val = summary.get("validation")
    if not val:
        return f"{head}; no data.validation, so no validation figures"

    def figures(row: dict) -> str:
        loss = f"validation loss {row['val_loss']:.4f}" if "val_loss" in row else "validation loss not measured"
        rouge = f"ROUGE-1 {row['val_rouge1']:.4f} (n={row['rouge_samples']})" if "val_rouge1" in row else None
        if not val["rouge_samples"]:
            return loss
        return f"{loss}, {rouge or 'ROUGE-1 not measured at that step'}"

    if val["best_step"] is None:
        return f"{head}; no evaluation gave a finite {val['metric']}"
    line = f"{head}; best step {val['best_step']} by {val['metric']}: {figures(val['best'])}"
    if val["final_step"] != val["best_step"]:
        line += f"; last (step {val['final_step']}): {figures(val['final'])}"
    if val["stopped_early"]:
        line += f"; stopped early (planned {summary['planned_steps']})"
    return line + (f"; best weights in {val['best_dir']}" if val["best_dir"] else "")


def _train(
    cfg: TrainConfig,
    model: Any,
    examples: ExampleTable,
    optim: Any,
    tokenizer: Any,
    save: Any,
    accelerator: Any,
    resume: bool,
    validation: Validation | None = None,
) -> loop.LoopResult:
    """The shared loop with this config's seed, output folder, checkpointing and logging."""
    return loop.train(
        model,
        examples,
        optim,
        pad_id=tokenizer.pad_token_id,
        seed=cfg.seed,
        output_dir=Path(cfg.output_dir),
        save_weights=save,
        config_yaml=dump_config(cfg),
        accelerator=accelerator,
        checkpoint_every=cfg.checkpoint.every_steps,
        keep_last=cfg.checkpoint.keep_last,
        resume=resume,
        log_every=cfg.log_every,
        parallel=cfg.parallel,
        provenance=provenance(cfg),
        validation=validation,
    )


def provenance(cfg: TrainConfig) -> dict[str, str]:
    """Contents (not paths) that a checkpoint must share with the run resuming it."""
    found = {"data.train sha256": file_digest(Path(cfg.data.train))}
    if cfg.data.validation:  # it decides the best checkpoint and early stopping
        found["data.validation sha256"] = file_digest(Path(cfg.data.validation))
    if cfg.recipe == "lora_sft":
        found["base model"] = base_model_identity(Path(cfg.model.path))
    else:  # pretrain_mini trains its tokenizer first and keeps it in output_dir
        found["tokenizer sha256"] = file_digest(Path(cfg.output_dir) / TOKENIZER_FILE)
    return found


def pretraining_blocks(
    tokenizer: Any, records: list[dict], texts: list[str], cfg: TrainConfig
) -> tuple[Callable[[], Iterator[Example]], OptimArgs]:
    """A maker of the packed blocks for pretraining, and the optimiser args to run over them.

    With ``data.pretrain_order: neighbours`` every pass over the corpus gets its own
    similarity chain (a new seed), so the blocks of all passes are made in one table and the
    loop runs one "epoch" over them. Nothing is computed until the maker is called.
    """
    size = cfg.data.max_seq_len
    if cfg.data.pretrain_order == "random":
        return (lambda: iter_blocks(tokenizer, texts, size)), cfg.optim
    if cfg.data.pretrain_order != "neighbours":
        raise RadLlamaError(f"data.pretrain_order must be 'random' or 'neighbours', not {cfg.data.pretrain_order!r}")
    passes = max(1, math.ceil(cfg.optim.epochs))

    def blocks() -> Iterator[Example]:
        near = nearest_reports(records)  # the same for every pass; only the walk's seed changes
        for p in range(passes):
            order = neighbour_chain(near, seed=cfg.seed + p)
            yield from iter_blocks(tokenizer, (texts[i] for i in order), size)

    return blocks, dataclasses.replace(cfg.optim, epochs=cfg.optim.epochs / passes)


def pretraining_validation(cfg: TrainConfig, tokenizer: Any) -> Validation | None:
    """Validation for pretraining: packed blocks of the validation reports (loss), and ROUGE-1
    of the base model continuing ``FINDINGS: …\nIMPRESSION:`` on the first ``eval.rouge_samples``."""
    if not cfg.data.validation:
        return None
    records = read_training_records(cfg.data.validation, "validation")
    sections = cfg.data.pretrain_sections
    if cfg.eval.rouge_samples and not (
        "findings" in sections and "impression" in sections[sections.index("findings") + 1 :]
    ):
        raise RadLlamaError(
            "eval.rouge_samples in pretraining needs data.pretrain_sections to hold findings, then impression "
            "(the model answers by continuing the findings); set eval.rouge_samples=0"
        )
    size = cfg.data.max_seq_len
    settings = ["validation", file_digest(Path(cfg.data.validation)), sections, size]

    def make() -> Iterator[tuple[str, Example, bool]]:
        for block in iter_blocks(tokenizer, (report_text(r, sections) for r in records), size):
            yield "validation", block, False

    blocks = cached_examples(cfg, tokenizer, settings, make)
    if not len(blocks):
        raise RadLlamaError(f"{cfg.data.validation}: the validation text is shorter than one block")
    sample = records[: cfg.eval.rouge_samples]
    answer = continuation_answerer(tokenizer, cfg.eval.max_new_tokens)
    return Validation(blocks, [r["findings"] for r in sample], [r["impression"] for r in sample], answer, cfg.eval)


def sft_validation(cfg: TrainConfig, tokenizer: Any, style: PromptStyle, retriever: Any) -> Validation | None:
    """Validation for instruction tuning: the impression task (the one evaluation scores), its
    prompts as generation renders them (retrieval from the training index, nothing left out)."""
    if not cfg.data.validation:
        return None
    records = read_training_records(cfg.data.validation, "validation")
    size = cfg.data.max_seq_len
    settings = ["validation", file_digest(Path(cfg.data.validation)), dataclasses.asdict(style), size]

    def make() -> Iterator[tuple[str, Example, bool]]:
        for example, cut in iter_sft_examples(records, tokenizer, style, size, retriever, training=False):
            yield "validation", example, cut

    examples = cached_examples(cfg, tokenizer, settings, make)
    sample = records[: cfg.eval.rouge_samples]
    answer = impression_answerer(tokenizer, style, retriever, cfg.eval.max_new_tokens)
    return Validation(examples, [r["findings"] for r in sample], [r["impression"] for r in sample], answer, cfg.eval)


def cached_examples(
    cfg: TrainConfig,
    tokenizer: Any,
    settings: list,
    make: Callable[[], Iterable[tuple[str, Example, bool]]],
) -> ExampleTable:
    """The examples ``make()`` yields, in an Arrow table cached under a hash of what decides them:
    the training data, the tokenizer and ``settings`` (radllama.train.example_table).

    Every rank asks for it: ``datasets`` holds a file lock while one builds, and the others open
    what it built. No collective: ranks waiting at a barrier through a long build would time out.
    """
    parts = {"recipe": cfg.recipe, "data.train sha256": file_digest(Path(cfg.data.train)), "tokenizer": tokenizer}
    key = content_key(parts | {"settings": settings})
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.output_dir) / CACHE_DIR
    return cached_table(cache, key, make)


def sft_examples(
    cfg: TrainConfig, records: list[dict], tokenizer: Any, style: PromptStyle, retriever: Any
) -> ExampleTable:
    """The examples of ``data.tasks`` (:func:`cached_examples`)."""
    check_tasks(cfg.data.tasks)  # before building: an error inside the generator would arrive wrapped
    d = cfg.data
    settings = [dataclasses.asdict(style), d.max_seq_len, d.tasks, d.canaries, d.canary_repeats, cfg.seed]
    return cached_examples(
        cfg,
        tokenizer,
        settings,
        lambda: iter_task_examples(records, tokenizer, style, d.max_seq_len, d.tasks, cfg.seed, retriever),
    )


def pretrain_mini(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train radllama-mini's tokenizer and base model from scratch on training report text."""
    seed_everything(cfg.seed)
    accelerator = _accelerator()
    out = prepare_output_dir(Path(cfg.output_dir), accelerator, resume, overwrite)
    records = read_training_records(cfg.data.train)
    records, canaries = plant_canaries(records, cfg.data.canaries, cfg.data.canary_repeats, cfg.seed)
    texts = [report_text(r, cfg.data.pretrain_sections) for r in records]
    style = prompt_style(cfg)
    # The fixed prompt strings go into the tokenizer corpus so they cost few tokens.
    fixed = [
        style.instruction + ".",
        style.system or "",
        "Impressions of similar earlier reports:",
        "Findings:",
    ]
    if not (resume and (out / TOKENIZER_FILE).is_file()):
        tokenizer = train_tokenizer(texts + fixed * 50, cfg.mini.vocab_size)
        if accelerator.is_main_process:  # part of the run from its start (hashed into each checkpoint)
            tokenizer.save_pretrained(out)
        accelerator.wait_for_everyone()
    # The run's own, as saved: its checkpoints hold ids of this vocabulary, and a resumed run's
    # tokenizer is then the same object as the first's (so it finds the examples cache).
    tokenizer = load_tokenizer(out)
    model = build_model(cfg.mini, tokenizer, seed=cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"radllama-mini: {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}")
    make, optim = pretraining_blocks(tokenizer, records, texts, cfg)
    d = cfg.data
    # Ordered by neighbours, the table holds every pass over the corpus (pretraining_blocks).
    passes = math.ceil(cfg.optim.epochs) if d.pretrain_order == "neighbours" else 1
    settings = [d.pretrain_sections, d.pretrain_order, d.max_seq_len, passes, d.canaries, d.canary_repeats, cfg.seed]
    blocks = cached_examples(cfg, tokenizer, settings, lambda: (("pretrain", b, False) for b in make()))
    if not len(blocks):
        raise RadLlamaError("training text is shorter than one block; lower data.max_seq_len")

    def save(folder: Path, state_dict: dict | None) -> None:
        save_pretrained(model, tokenizer, folder, state_dict)
        style.save(folder)
        if canaries is not None:
            atomic_write_json(folder / CANARY_FILE, canaries)

    validation = pretraining_validation(cfg, tokenizer)
    result = _train(cfg, model, blocks, optim, tokenizer, save, accelerator, resume, validation)
    return _finish(cfg, out, result, {"parameters": n_params, "blocks": len(blocks)}, accelerator.is_main_process)


def lora_sft(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """LoRA (or full, with lora.enabled=false) instruction tuning on the tasks of ``data.tasks``."""
    seed_everything(cfg.seed)
    accelerator = _accelerator()
    out = prepare_output_dir(Path(cfg.output_dir), accelerator, resume, overwrite)
    records = read_training_records(cfg.data.train)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    device = str(accelerator.device)  # each process its own GPU
    # Under FSDP the whole model need not fit one GPU: it is loaded into CPU memory and
    # fully_shard moves each rank's shards to its GPU. The dtype is still chosen for the GPU.
    sharded = cfg.parallel == "fsdp" and accelerator.num_processes > 1
    model = load_causal_lm(
        cfg.model.path,
        dtype=DTYPE_NAMES[pick_dtype(cfg.model.dtype, device)],
        trust_remote_code=cfg.model.trust_remote_code,
        load_in_4bit=cfg.model.load_in_4bit,
        device="cpu" if sharded else device,
    )
    model = prepare_for_training(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if trainable == 0:
        raise RadLlamaError("no trainable parameters: check lora.target_modules")
    console.print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    style = prompt_style(cfg)
    retriever = TfidfRetriever(records) if style.retrieval_k > 0 else None  # clean: canaries only in examples
    if retriever is not None and retriever.approximate:
        console.print(f"retrieval neighbours: {retriever.describe()}")
    planted, canaries = plant_canaries(records, cfg.data.canaries, cfg.data.canary_repeats, cfg.seed)
    examples = sft_examples(cfg, planted, tokenizer, style, retriever)
    if not len(examples):
        raise RadLlamaError(f"{cfg.data.train}: no examples for data.tasks {cfg.data.tasks}")
    n_cut, per_task = examples.n_cut(), examples.per_task(cfg.data.tasks)
    if n_cut:
        console.print(
            f"{n_cut} of {len(examples)} examples had their findings cut to fit {cfg.data.max_seq_len} tokens"
        )

    def save(folder: Path, state_dict: dict | None) -> None:
        # Adapter only when LoRA; full weights otherwise. state_dict: gathered under FSDP.
        model.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        style.save(folder)
        if cfg.lora.enabled:  # loading refuses this adapter on any other base
            record_base(folder, cfg.model.path)
        if canaries is not None:  # which secrets were planted where, for `radllama audit`
            atomic_write_json(folder / CANARY_FILE, canaries)
        # Train split only: the index that generation and serving retrieve from (the prompt's examples when
        # retrieval_k > 0; MBR's retrieved candidates, --retrieved, whatever the prompt shows).
        write_retrieval_index(folder, records)

    validation = sft_validation(cfg, tokenizer, style, retriever)
    result = _train(cfg, model, examples, cfg.optim, tokenizer, save, accelerator, resume, validation)
    return _finish(
        cfg,
        out,
        result,
        {
            "trainable_parameters": trainable,
            "total_parameters": total,
            "examples": len(examples),
            "examples_cut": n_cut,
            "examples_per_task": per_task,
            "base": str(cfg.model.path),
        },
        accelerator.is_main_process,
    )


def lora_targets(cfg: TrainConfig, model: Any) -> list[str]:
    """``lora.target_modules``, with ``auto`` mapped per model type by peft's own table
    (q_proj,v_proj for Llama-likes and StableLM; query_key_value for GPT-NeoX)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as BY_TYPE

    targets = cfg.lora.target_modules
    if targets != "auto":
        return [targets] if isinstance(targets, str) else list(targets)
    model_type = getattr(model.config, "model_type", "")
    if model_type not in BY_TYPE:
        raise RadLlamaError(
            f"lora.target_modules=auto does not know model type '{model_type}': "
            "list its attention projection names, e.g. lora.target_modules=[q_proj,v_proj]"
        )
    return list(BY_TYPE[model_type])


def prepare_for_training(model: Any, cfg: TrainConfig) -> Any:
    """Gradient checkpointing, k-bit preparation and the LoRA adapter, as configured."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.model.load_in_4bit:
        model = prepare_model_for_kbit_training(model, cfg.model.gradient_checkpointing)
    elif cfg.model.gradient_checkpointing:
        # Non-reentrant checkpointing lets gradients reach LoRA weights through frozen layers.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not cfg.lora.enabled:
        return model
    targets = lora_targets(cfg, model)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise RadLlamaError(f"LoRA targets {targets} not found in the model: {exc}") from exc


def run(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Dispatch to the configured recipe (``resume``/``overwrite``: see :func:`prepare_output_dir`)."""
    fn = {"pretrain_mini": pretrain_mini, "lora_sft": lora_sft}[cfg.recipe]
    summary = fn(cfg, resume=resume, overwrite=overwrite)
    console.print(json.dumps(summary, indent=2))
    console.print(summary_line(summary), markup=False, highlight=False)
    return summary
