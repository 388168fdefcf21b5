"""Batched decoding: left padding, KV cache, per-row stop at EOS, length-sorted batches.
Pure functions shared by the CLI, evaluation and the server.

Greedy decoding of Hugging Face causal LMs takes a fast path (:func:`_greedy_decode`) that
gives the same tokens as ``model.generate`` with less work: rows that finished (EOS or
their token limit) leave the batch at once, where ``generate`` keeps decoding them as
padding until the longest row ends; and the KV cache grows in place instead of being
re-concatenated at every step. Sampling, and models the fast path does not know, go
through ``model.generate``. Measured in BENCHMARKS.md (bench/bench_generate.py).
"""

from __future__ import annotations

import functools
import inspect
import os
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
    fast_greedy: bool = True  # greedy via _greedy_decode where the model allows it (same tokens, faster)
    share_prefix: bool = True  # fast path: prompts' common first tokens computed once per batch


@dataclass
class Completion:
    """One generated continuation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


def generate_kwargs(tokenizer: Any, temperature: float, top_p: float) -> dict[str, Any]:
    """``model.generate`` options shared by every caller: greedy unless temperature > 0,
    no top-k, the tokenizer's EOS and pad ids, KV cache on."""
    sample = temperature > 0
    return {
        "do_sample": sample,
        "temperature": temperature if sample else None,
        "top_p": top_p if sample else None,
        "top_k": None,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "use_cache": True,
    }


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# Shorter common prompt beginnings are not worth a separate forward pass.
MIN_SHARED_PREFIX = 8


@functools.cache
def _growing_layer() -> type:
    """``DynamicLayer`` keeping its keys/values in a buffer with spare room: a decoding step
    copies only the new entries (``DynamicLayer`` re-concatenates the whole cache each step)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            n = self.get_seq_length()
            m = n + key_states.shape[-2]
            if not self.is_initialized or m > self._kbuf.shape[2]:
                self._grow(key_states, value_states, n, m)
            self._kbuf[:, :, n:m] = key_states
            self._vbuf[:, :, n:m] = value_states
            self.keys, self.values = self._kbuf[:, :, :m], self._vbuf[:, :, :m]
            return self.keys, self.values

        def _grow(self, k: torch.Tensor, v: torch.Tensor, n: int, m: int) -> None:
            room = max(m + 64, 2 * n)
            kbuf = k.new_empty(k.shape[0], k.shape[1], room, k.shape[3])
            vbuf = v.new_empty(v.shape[0], v.shape[1], room, v.shape[3])
            if n:
                kbuf[:, :, :n], vbuf[:, :, :n] = self.keys, self.values
            self.device, self.is_initialized = k.device, True
            self._kbuf, self._vbuf = kbuf, vbuf

        def assign(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            """Start from these keys/values (e.g. a shared prompt head expanded to every row)."""
            self._grow(keys, values, 0, keys.shape[2])
            m = keys.shape[2]
            self._kbuf[:, :, :m], self._vbuf[:, :, :m] = keys, values
            self.keys, self.values = self._kbuf[:, :, :m], self._vbuf[:, :, :m]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.is_initialized:
                n = self.get_seq_length()
                self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
                self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

    return GrowingLayer


def fast_greedy_cache(model: Any) -> tuple[Any, str] | None:
    """A growing KV cache and the forward's name for it, or None when the fast path does not apply.

    It applies to decoder-only models whose forward takes ``position_ids`` and whose cache
    is made of plain full-attention ``DynamicLayer``s (sliding-window, linear-attention or
    quantised caches, encoder-decoders and wrapped models such as an unmerged PeftModel go
    through ``generate``).
    """
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return None
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return None
    params = inspect.signature(model.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values" if "past_key_values" in params else None
    if kw is None or "position_ids" not in params or "attention_mask" not in params:
        return None
    try:
        cache = DynamicCache(config=config)
    except Exception:  # noqa: BLE001 - any model-specific cache trouble: use generate
        return None
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [_growing_layer()() for _ in cache.layers]
    return cache, kw


def shared_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """How many first tokens every row shares, when worth computing once (else 0).

    Every row keeps at least one token of its own, so each has a last position to predict from.
    """
    shared = min(len(os.path.commonprefix([list(r) for r in rows])), min(len(r) for r in rows) - 1)
    return shared if shared >= MIN_SHARED_PREFIX else 0


KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values ([batch, heads, tokens, head_dim])


def _prefill_kwargs(model: Any, cache: Any, cache_kw: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {cache_kw: cache, "use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return kwargs


def prefill_head(model: Any, tokens: Sequence[int]) -> KV:
    """Keys/values of a prompt beginning, computed for one row (to be shared by many)."""
    fast = fast_greedy_cache(model)
    assert fast is not None, "prefill_head needs a model the fast path supports"
    cache, cache_kw = fast
    head = torch.tensor([list(tokens)], device=model.device)
    model(input_ids=head, attention_mask=torch.ones_like(head),
          position_ids=torch.arange(len(tokens), device=model.device)[None],
          **_prefill_kwargs(model, cache, cache_kw))  # fmt: skip
    return [(layer.keys, layer.values) for layer in cache.layers]


def prefill_rows(
    model: Any,
    cache: Any,
    cache_kw: str,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    shared: int = 0,
    head: KV | None = None,
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Run the prompts (token ids per row) into ``cache``; (output, attention mask, position ids).

    Prompts built from one template share their first ``shared`` tokens (instruction, headings).
    Those are computed once, for one row (or taken from ``head``, computed earlier), and copied
    to every row; the rest of each prompt follows, left-padded: cache layout ``[shared | padding
    | own tokens]``, positions counted over the real tokens only, exactly as for a left-padded
    prompt. Saves the shared share of prefill.
    """
    device = model.device
    kwargs = _prefill_kwargs(model, cache, cache_kw)
    if shared:
        head = head if head is not None else prefill_head(model, rows[0][:shared])
        for layer, (k, v) in zip(cache.layers, head, strict=True):
            layer.assign(k[:, :, :shared].expand(len(rows), -1, -1, -1), v[:, :, :shared].expand(len(rows), -1, -1, -1))
    width = max(len(r) - shared for r in rows)
    tail = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    tail_mask = torch.zeros_like(tail)
    for i, r in enumerate(rows):
        own = list(r[shared:])
        tail[i, width - len(own) :] = torch.tensor(own, device=device)
        tail_mask[i, width - len(own) :] = 1
    mask = torch.cat([tail_mask.new_ones(len(rows), shared), tail_mask], dim=1)
    positions = (shared + tail_mask.cumsum(-1) - 1).masked_fill(tail_mask == 0, 0)
    cache_position = torch.arange(shared, shared + width, device=device)
    out = model(input_ids=tail, attention_mask=mask, position_ids=positions, cache_position=cache_position, **kwargs)
    return out, mask, positions


def _greedy_decode(
    model: Any,
    cache: Any,
    cache_kw: str,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_id: int | None,
    pad_id: int,
    share_prefix: bool = True,
) -> list[list[int]]:
    """Greedy tokens per row, EOS included where reached; finished rows leave the batch.

    Inputs are built as ``generate`` builds them (positions from the real tokens, logits of
    the last position only), so each row gets the tokens ``generate`` gives it, up to
    floating-point rounding (see bench/bench_generate.py for how often that flips a token).
    """
    n_rows = len(prompts)
    shared = shared_prefix_len(prompts) if share_prefix and n_rows > 1 else 0
    out, mask, positions = prefill_rows(model, cache, cache_kw, prompts, pad_id, shared)
    width = mask.shape[1]
    token = out.logits[:, -1].argmax(-1)
    rows = list(range(n_rows))  # batch row -> prompt index
    produced: list[list[int]] = [[] for _ in range(n_rows)]
    last = positions[:, -1]
    for step in range(max_new_tokens):
        keep = []
        for j, (r, t) in enumerate(zip(rows, token.tolist(), strict=True)):
            produced[r].append(t)
            if t != eos_id and len(produced[r]) < max_new_tokens:
                keep.append(j)
        if not keep:
            break
        if len(keep) < len(rows):  # finished rows leave: later steps compute only live ones
            index = torch.tensor(keep, device=token.device)
            cache.batch_select_indices(index)
            rows = [rows[j] for j in keep]
            token, mask, last = token[index], mask[index], last[index]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        last = last + 1
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=last[:, None],
            cache_position=torch.tensor([width + step], device=token.device),
            use_cache=True,
            **{cache_kw: cache},
        )
        token = out.logits[:, -1].argmax(-1)
    return produced


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
    fast = None if sample or not settings.fast_greedy or settings.max_new_tokens < 1 else fast_greedy_cache(model)
    if fast is not None:
        pad_id = tokenizer.pad_token_id  # set: padding=True above needs it
        prompt_ids = [r[m.bool()].tolist() for r, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        new = _greedy_decode(
            model, *fast, prompt_ids, settings.max_new_tokens, tokenizer.eos_token_id, pad_id, settings.share_prefix
        )
    else:
        out = model.generate(
            **enc,
            max_new_tokens=settings.max_new_tokens,
            **generate_kwargs(tokenizer, settings.temperature, settings.top_p),
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
