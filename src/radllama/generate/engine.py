"""Batched decoding with transformers' ``generate``: left padding, KV cache, per-row stop
at EOS, length-sorted batches. Pure functions shared by the CLI, evaluation and the server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class GenerationSettings:
    """Decoding options (greedy unless temperature > 0)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None


@dataclass
class Completion:
    """One generated continuation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@torch.inference_mode()
def generate_batch(
    model: Any, tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings
) -> list[Completion]:
    """Decode one batch of prompts together (rows that hit EOS stop, the rest go on)."""
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    sample = settings.temperature > 0
    out = model.generate(
        **enc,
        max_new_tokens=settings.max_new_tokens,
        do_sample=sample,
        temperature=settings.temperature if sample else None,
        top_p=settings.top_p if sample else None,
        top_k=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    results = []
    for i, row in enumerate(new):
        prompt_len = int(enc["attention_mask"][i].sum())
        ended = tokenizer.eos_token_id in row
        ids = row[: row.index(tokenizer.eos_token_id)] if ended else row
        text, stopped = _cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), settings.stop)
        reason = "stop" if ended or stopped else "length"
        results.append(Completion(text.strip(), prompt_len, len(ids) + int(ended), reason))
    return results


def generate_many(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationSettings,
    batch_size: int = 32,
    on_batch: Callable[[list[int], list[Completion]], None] | None = None,
) -> list[Completion]:
    """Decode many prompts in length-sorted batches (less padding); results in input order.

    ``on_batch(indices, completions)`` is called after each batch, e.g. to append results
    to a file as they are produced.
    """
    lengths = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[Completion | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        done = generate_batch(model, tokenizer, [prompts[i] for i in idx], settings)
        for i, c in zip(idx, done, strict=True):
            results[i] = c
        if on_batch is not None:
            on_batch(idx, done)
    return [r for r in results if r is not None]
