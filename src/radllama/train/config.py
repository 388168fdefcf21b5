"""Typed training configs: YAML files with ``key=value`` overrides, validated on load.

Defaults are the Radiology-Llama2 paper's LoRA recipe (r=8, alpha=16, dropout 0.05 on
q_proj/v_proj, lr 3e-4, weight decay 0.01, batch 128). The resolved config is saved beside
every output so a run can always be reproduced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from radllama.errors import RadLlamaError
from radllama.models.mini import MiniModelArgs


@dataclass
class DataArgs:
    """Where the examples come from."""

    train: str = "runs/data/openi/train.jsonl"  # split JSONL (records with findings/impression)
    # Split JSONL for validation (never the test split): validation loss, generated ROUGE-1,
    # early stopping and the best checkpoint (see EvalArgs). None = no validation.
    validation: str | None = None
    max_seq_len: int = 512  # longer examples are cut in the findings, never in the target
    # task -> examples per eligible record (see radllama.train.examples.TASKS): impression,
    # indication_impression, abnormal_list, presence. Evaluation scores only "impression".
    tasks: dict[str, float] = field(default_factory=lambda: {"impression": 1.0})
    # pretrain_mini only: report sections that make the text corpus, and the document order
    # inside packed blocks ("random", or "neighbours" = similar reports side by side).
    pretrain_sections: list[str] = field(default_factory=lambda: ["indication", "comparison", "findings", "impression"])
    pretrain_order: str = "random"
    # Privacy audit (radllama.canaries, `radllama audit`): plant this many random canary sentences, each in
    # the impressions of canary_repeats training records (copies; files and retrieval index stay clean).
    canaries: int = 0
    canary_repeats: int = 1
    # Folder of the tokenised-examples cache (Arrow, keyed by a hash of the data, tokenizer,
    # prompt and settings). None = output_dir/examples_cache; name a shared folder so that runs
    # on the same data (a sweep) build the examples once.
    cache_dir: str | None = None


@dataclass
class ModelArgs:
    """The base model."""

    path: str = "runs/mini/base"  # local Hugging Face folder (or hub id when online)
    dtype: str = "auto"  # auto = bf16 on a GPU that supports it, fp32 on CPU
    trust_remote_code: bool = False  # only for models whose code ships with the weights
    gradient_checkpointing: bool = False
    load_in_4bit: bool = False  # QLoRA via bitsandbytes (CUDA only)


@dataclass
class LoraArgs:
    """LoRA adapter (peft). Paper defaults."""

    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    # Attention projections to adapt, or "auto": peft's table per model type
    # (q_proj,v_proj for Llama/Mistral/StableLM; query_key_value for GPT-NeoX/ChatGLM).
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class OptimArgs:
    """Optimiser and schedule (AdamW, warmup then cosine decay)."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    batch_size: int = 128  # effective (global) batch, reached by gradient accumulation
    micro_batch_size: int = 16  # per process and step
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    # "bf16": forward and loss under torch.autocast (bfloat16 matmuls; on CPU with AVX-512 BF16 or
    # AMX, on CUDA where bf16 is supported); the weights, their gradients and the optimiser stay in
    # model.dtype (fp32 on CPU by default: the fp32 master weights). "off": plain model.dtype. "auto": bf16
    # where the device multiplies bfloat16 natively, else off (on an AVX2-only CPU bf16 is slower than fp32).
    autocast: str = "off"
    # LoRA only: the share of each answer token's loss taken against the base model's own prediction
    # (adapters off) instead of the reference token, so tuning keeps what the base knew of findings the
    # training reports rarely state (radllama.train.batch.token_loss_sum). 0 = plain cross-entropy.
    base_mix: float = 0.0


@dataclass
class CheckpointArgs:
    """When to save ``step-NNNNNN/`` folders, and how many to keep."""

    every_steps: int = 0  # 0 = only at the end
    keep_last: int = 2


@dataclass
class EvalArgs:
    """What is measured on ``data.validation`` during training (nothing without it).

    An evaluation row goes into ``train_log.jsonl`` each time: validation loss always, and
    ROUGE-1 of greedy answers on a fixed sample when due. "An epoch" is the loop's pass over its
    examples (with ``data.pretrain_order: neighbours``: all passes together).
    """

    every_steps: int = 0  # validation loss every N optimiser steps; 0 = at the end of each epoch (and at the end)
    rouge_samples: int = 64  # validation reports answered greedily for ROUGE-1 (the first N); 0 = no ROUGE
    rouge_every_steps: int = 0  # ROUGE-1 every M steps; 0 = at the end of each epoch (and at the end)
    max_new_tokens: int = 64  # answer length limit for the ROUGE sample
    metric: str = "val_loss"  # what picks the best checkpoint and drives patience: val_loss | val_rouge1
    patience: int = 0  # stop after this many evaluations of the metric without improvement; 0 = never stop early
    min_delta: float = 0.0  # an improvement must beat the best so far by more than this
    keep_best: bool = True  # save the best weights to output_dir/best/ (with best.json: step and figures)


@dataclass
class PromptArgs:
    """Prompt style saved beside the model (see radllama.prompts.PromptStyle)."""

    instruction: str = "Derive the impression from findings in the radiology report"
    system: str | None = "You are a radiology assistant. Answer with a concise impression, as a radiologist writes it."
    retrieval_k: int = 0


@dataclass
class TrainConfig:
    """One training run: ``radllama train --config FILE [key=value ...]``."""

    recipe: str = "lora_sft"  # lora_sft | pretrain_mini
    output_dir: str = "runs/lora"
    seed: int = 0
    log_every: int = 5
    # How several processes share the work (see radllama.train.parallel): ddp (also one process),
    # fsdp (torch FSDP2: parameters, gradients and optimiser state sharded), or zero2 (DeepSpeed
    # ZeRO-2: optimiser state and gradients partitioned; pip install 'radllama[deepspeed]').
    parallel: str = "ddp"
    data: DataArgs = field(default_factory=DataArgs)
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)
    prompt: PromptArgs = field(default_factory=PromptArgs)
    mini: MiniModelArgs = field(default_factory=MiniModelArgs)  # pretrain_mini only


RECIPES = ("lora_sft", "pretrain_mini")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Instantiate a dataclass from a dict, rejecting unknown keys with their dotted path."""
    if not isinstance(data, dict):
        raise RadLlamaError(f"config section '{where or 'top'}' must be a mapping")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        dotted = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        raise RadLlamaError(f"unknown config key(s): {dotted}")
    kwargs = {}
    for key, value in data.items():
        sub = hints[key]
        path = f"{where}.{key}" if where else key
        kwargs[key] = _build(sub, value, path) if dataclasses.is_dataclass(sub) else _coerce(value, sub, path)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check a value against its field type; numbers written as text ("3e-4", which YAML 1.1
    reads as a string) become numbers."""
    args = get_args(hint)
    if get_origin(hint) in (UnionType, Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, path)
            except RadLlamaError as exc:
                errors.append(exc)
        raise errors[-1]
    origin = get_origin(hint) or hint
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin in (int, float):
        if isinstance(value, bool):
            pass
        elif isinstance(value, int | float) and (origin is float or float(value).is_integer()):
            return origin(value)
        elif isinstance(value, str):
            try:
                number = float(value)
                return origin(number) if origin is float or number.is_integer() else _bad(value, hint, path)
            except ValueError:
                pass
    elif origin is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)] if args else value
    elif origin is dict:
        if isinstance(value, dict):
            return {k: _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()} if args else value
    else:
        return value
    return _bad(value, hint, path)


def _bad(value: Any, hint: Any, path: str) -> Any:
    name = getattr(hint, "__name__", str(hint))
    raise RadLlamaError(f"config key {path}: expected {name}, got {value!r}")


def _set_dotted(tree: dict, dotted: str, raw: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RadLlamaError(f"override {dotted}: '{p}' is not a section")
    node[leaf] = yaml.safe_load(raw)  # "3e-4" -> float, "[q_proj,v_proj]" -> list, "null" -> None


def load_config(path: Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config and apply ``key=value`` overrides (dotted keys for sections)."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RadLlamaError(f"config file {path} not found")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise RadLlamaError(f"{path}: invalid YAML ({exc})") from exc
    for item in overrides or []:
        if "=" not in item:
            raise RadLlamaError(f"override '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), raw)
    optim = tree.get("optim")
    if isinstance(optim, dict) and optim.get("autocast") is False:  # YAML 1.1 reads a bare `off` as false
        optim["autocast"] = "off"
    cfg = _build(TrainConfig, tree, "")
    if cfg.recipe not in RECIPES:
        raise RadLlamaError(f"unknown recipe '{cfg.recipe}' (choose from {', '.join(RECIPES)})")
    if cfg.parallel not in ("ddp", "fsdp", "zero2"):
        raise RadLlamaError(f"parallel must be ddp, fsdp or zero2, not {cfg.parallel!r}")
    if cfg.optim.batch_size % cfg.optim.micro_batch_size:
        raise RadLlamaError("optim.batch_size must be a multiple of optim.micro_batch_size")
    if cfg.optim.autocast not in AUTOCAST:
        raise RadLlamaError(f"optim.autocast must be {' or '.join(AUTOCAST)}, not {cfg.optim.autocast!r}")
    if not 0.0 <= cfg.optim.base_mix < 1.0:
        raise RadLlamaError(f"optim.base_mix must be in [0, 1), not {cfg.optim.base_mix}")
    _check_eval(cfg)
    return cfg


AUTOCAST = ("off", "bf16", "auto")
EVAL_METRICS = {"val_loss": "min", "val_rouge1": "max"}  # metric -> which way is better


def _check_eval(cfg: TrainConfig) -> None:
    ev = cfg.eval
    if ev.metric not in EVAL_METRICS:
        raise RadLlamaError(f"eval.metric must be {' or '.join(EVAL_METRICS)}, not {ev.metric!r}")
    for key in ("every_steps", "rouge_samples", "rouge_every_steps", "patience"):
        if getattr(ev, key) < 0:
            raise RadLlamaError(f"eval.{key} must be 0 or more, not {getattr(ev, key)}")
    if ev.max_new_tokens < 1:
        raise RadLlamaError("eval.max_new_tokens must be at least 1")
    if ev.metric == "val_rouge1" and ev.rouge_samples == 0:
        raise RadLlamaError("eval.metric=val_rouge1 needs eval.rouge_samples above 0")
    if ev.patience and not cfg.data.validation:
        raise RadLlamaError("eval.patience (early stopping) needs data.validation")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain dict of a config (for saving the resolved config)."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
