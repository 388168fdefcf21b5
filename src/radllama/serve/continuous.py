"""Continuous batching: the transformers engine decodes step by step, and rows join and leave between steps.

A request no longer waits for a whole batch to finish (request-level batching) nor holds a slot
after its answer is complete: after every decoding step, finished rows (EOS, their own
``max_tokens``, a stop string, a client that went away) leave the running batch, and queued rows
are prefilled and join it. So 32 clients that keep sending requests keep the batch full, and each
answer returns as soon as it is done.

The running batch keeps its keys/values in one pool per layer (:class:`SlotLayer`): live rows are
the first ``n`` rows of a ``[slots, kv_heads, columns, head_dim]`` buffer (slots allocated as rows
come, up to ``max_batch``) and live columns a window ``[start, end)`` of it. Every row's tokens end
at the newest column, as in a left-padded batch, and it is masked where it has no token.
Joining writes only the new rows, leaving moves only the last rows into the freed slots, and
columns no live row uses are dropped by moving ``start``: no step copies the whole cache
(``DynamicCache`` re-concatenates it at every step).

Prompts that share a beginning (every ``/v1/impressions`` prompt starts with the same system
prompt and instruction) reuse its keys/values: the engine keeps the last shared head it computed.

Greedy rows take the argmax, as :func:`radllama.generate.engine.generate_batch` does, so answers
equal ``radllama generate``'s; sampled rows are drawn with their request's temperature and top-p
(transformers' logits warpers), a seeded request's rows each from its own generator, so a seed
gives the same text whatever else is in the batch.
"""

from __future__ import annotations

import logging
import os
import queue
from collections import deque
from typing import Any

import numpy as np
import torch

from radllama.generate.engine import KV, MIN_SHARED_PREFIX, fast_greedy_cache, prefill_head, prefill_rows
from radllama.serve.batching import EngineThread, Row, fail_jobs, finish_row, push_token

log = logging.getLogger("radllama.serve")

# A forward pass's fixed cost, in prompt tokens of compute: about 7 ms, or 64 tokens, for
# radllama-mini on 2 CPU threads (bench/bench_serve.py); padding beyond it is split off.
PAD_TOKENS_PER_FORWARD = 64
# Columns a new key/value buffer has beyond what it needs now: room for this many decoding steps
# before it is laid out again (a copy of the live window).
SPARE_COLUMNS = 256


def supports(model: Any) -> bool:
    """Whether the step-level engine can run this model (the fast greedy path's cache applies)."""
    return model is not None and fast_greedy_cache(model) is not None


def _slot_layer() -> type:
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):
        """One layer's keys/values of the running batch (see the module docstring)."""

        def setup(self, like: torch.Tensor, rows: int, columns: int) -> None:
            # Zeros, not empty memory: masked entries are still multiplied by zero attention
            # weights, and 0 * NaN from uninitialised memory would poison the row.
            shape = (rows, like.shape[1], columns, like.shape[3])
            self.kbuf, self.vbuf = like.new_zeros(shape), like.new_zeros(shape)
            self.n = self.start = self.end = 0
            self.device, self.is_initialized = like.device, True
            self._view()

        def _view(self) -> None:
            self.keys = self.kbuf[: self.n, :, self.start : self.end]
            self.values = self.vbuf[: self.n, :, self.start : self.end]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            # One decoding step: a new column for every live row.
            self.kbuf[: self.n, :, self.end] = key_states[:, :, 0]
            self.vbuf[: self.n, :, self.end] = value_states[:, :, 0]
            self.end += 1
            self._view()
            return self.keys, self.values

        def relayout(self, columns: int, shift: int, rows: int | None = None) -> None:
            """A buffer of ``columns`` columns (and ``rows`` slots) with the live window moved to ``shift``."""
            length = self.end - self.start
            shape = (rows or self.kbuf.shape[0], self.kbuf.shape[1], columns, self.kbuf.shape[3])
            kbuf, vbuf = self.kbuf.new_zeros(shape), self.vbuf.new_zeros(shape)
            kbuf[: self.n, :, shift : shift + length] = self.kbuf[: self.n, :, self.start : self.end]
            vbuf[: self.n, :, shift : shift + length] = self.vbuf[: self.n, :, self.start : self.end]
            self.kbuf, self.vbuf, self.start, self.end = kbuf, vbuf, shift, shift + length
            self._view()

        def add(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            """New rows, right-aligned to the newest column (caller made room on the left)."""
            k, length = keys.shape[0], keys.shape[2]
            self.kbuf[self.n : self.n + k, :, self.end - length : self.end] = keys
            self.vbuf[self.n : self.n + k, :, self.end - length : self.end] = values
            # Columns left of the new rows' tokens hold stale (finite) values; they are masked.
            self.n += k
            self._view()

        def move_rows(self, holes: list[int], movers: list[int], n: int) -> None:
            window = slice(self.start, self.end)
            for hole, mover in zip(holes, movers, strict=True):  # a loop of slices: 2x faster than one gather
                self.kbuf[hole, :, window] = self.kbuf[mover, :, window]
                self.vbuf[hole, :, window] = self.vbuf[mover, :, window]
            self.n = n
            self._view()

        def set_window(self, start: int, end: int) -> None:
            self.start, self.end = start, end
            self._view()

    return SlotLayer


class RunningBatch:
    """The rows being decoded, their cache, attention mask, positions and next input tokens."""

    def __init__(self, model: Any, max_rows: int) -> None:
        from transformers import DynamicCache

        cache, self.cache_kw = fast_greedy_cache(model)
        self.cache = DynamicCache(config=model.config)
        self.cache.layers = [_slot_layer()() for _ in cache.layers]
        self.model = model
        self.max_rows = max_rows
        self.rows: list[Row] = []
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=model.device)
        self.last = torch.zeros(0, dtype=torch.long, device=model.device)  # position of each row's last token
        self.tokens = torch.zeros(0, dtype=torch.long, device=model.device)  # next input of each row

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def free(self) -> int:
        return self.max_rows - len(self.rows)

    def add(self, rows: list[Row], kv: KV, mask: torch.Tensor, last: torch.Tensor, tokens: torch.Tensor) -> None:
        """Join prefilled rows (their keys/values ``kv``, left-padded like ``mask``) to the batch."""
        layers = self.cache.layers
        length, need = mask.shape[1], self.size + len(rows)
        # Slots are allocated as rows come (doubling, up to max_rows): a server that mostly sees
        # one request at a time does not hold a full batch's keys and values.
        slots = min(self.max_rows, max(need, 2 * layers[0].kbuf.shape[0] if self.rows else need, 4))
        if not self.rows:  # an empty batch starts a fresh window, with room left of it for longer prompts
            for layer, (k, _) in zip(layers, kv, strict=True):
                if (not getattr(layer, "is_initialized", False) or layer.kbuf.shape[2] < 2 * length + 64
                        or layer.kbuf.shape[0] < need):  # fmt: skip
                    layer.setup(k, slots, 3 * length + SPARE_COLUMNS)
                layer.n = 0
                layer.set_window(length, 2 * length)
            self.mask = mask.new_zeros(0, length)
        elif layers[0].kbuf.shape[0] < need:
            for layer in layers:
                layer.relayout(layer.kbuf.shape[2], layer.start, slots)
        current = self.mask.shape[1]
        if length > current:  # longer than the live window: open columns on its left
            extra = length - current
            if layers[0].start < extra:  # no room there: a new buffer, again with room on the left
                columns = max(length + extra + current + SPARE_COLUMNS, layers[0].kbuf.shape[2])
                for layer in layers:
                    layer.relayout(columns, length + extra)
            for layer in layers:
                layer.set_window(layer.start - extra, layer.end)
            self.mask = torch.cat([self.mask.new_zeros(self.size, extra), self.mask], dim=1)
        width = self.mask.shape[1]
        for layer, (k, v) in zip(layers, kv, strict=True):
            layer.add(k, v)
        mask = torch.cat([mask.new_zeros(len(rows), width - length), mask], dim=1)
        self.mask = torch.cat([self.mask, mask])
        self.last = torch.cat([self.last, last])
        self.tokens = torch.cat([self.tokens, tokens])
        self.rows += rows

    def step(self) -> torch.Tensor:
        """One decoding step for every live row; the logits of their next token."""
        layers = self.cache.layers
        if layers[0].end >= layers[0].kbuf.shape[2]:  # out of columns: re-lay the window with room
            width = self.mask.shape[1]
            for layer in layers:
                layer.relayout(max(3 * width + SPARE_COLUMNS, layer.kbuf.shape[2]), width)
        mask = torch.cat([self.mask, self.mask.new_ones(self.size, 1)], dim=1)
        last = self.last + 1
        out = self.model(
            input_ids=self.tokens[:, None],
            attention_mask=mask,
            position_ids=last[:, None],
            cache_position=torch.tensor([self.mask.shape[1]], device=mask.device),
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        self.mask, self.last = mask, last
        return out.logits[:, -1]

    def remove(self, leaving: list[int]) -> None:
        """Rows ``leaving`` give their slots up: the last live rows move into the freed ones."""
        if not leaving:
            return
        gone = set(leaving)
        n = self.size - len(gone)
        holes = [i for i in sorted(gone) if i < n]
        movers = [j for j in range(n, self.size) if j not in gone]
        order = list(range(n))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        for layer in self.cache.layers:
            layer.move_rows(holes, movers, n)
        index = torch.tensor(order, device=self.mask.device, dtype=torch.long)
        self.rows = [self.rows[j] for j in order]
        self.mask, self.last, self.tokens = self.mask[index], self.last[index], self.tokens[index]
        # Columns no live row uses any more are dropped from the window's left.
        used = self.mask.any(0).nonzero()
        drop = int(used[0]) if len(used) else self.mask.shape[1]
        if drop:
            self.mask = self.mask[:, drop:]
            for layer in self.cache.layers:
                layer.set_window(layer.start + drop, layer.end)


def row_seed(seed: int, index: int) -> int:
    """The seed of a request's choice ``index``: independent streams for every (seed, choice) pair
    (``seed + index`` would give seed 8's first choice the draws of seed 7's second)."""
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(1, dtype=np.uint64)[0]
    return int(state) % 2**63


def choose(logits: torch.Tensor, rows: list[Row]) -> torch.Tensor:
    """Each row's next token: argmax for greedy rows, a draw with its request's sampling otherwise."""
    tokens = logits.argmax(-1)
    groups: dict[tuple[float, float], list[int]] = {}
    for i, row in enumerate(rows):
        sampling = row.job.sampling if row.job is not None else None
        if sampling is not None and not sampling.greedy:
            groups.setdefault((sampling.temperature, sampling.top_p), []).append(i)
    if not groups:
        return tokens
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    for (temperature, top_p), index in groups.items():
        scores = TemperatureLogitsWarper(temperature)(None, logits[index].float())
        if top_p < 1.0:
            scores = TopPLogitsWarper(top_p)(None, scores)
        probs = scores.softmax(-1)
        usable = torch.isfinite(probs).all(-1) & (probs.sum(-1) > 0)  # else the row keeps its argmax
        for j, i in enumerate(index):
            if usable[j]:
                # A seeded row draws from its own generator: its text does not depend on its neighbours.
                tokens[i] = torch.multinomial(probs[j], 1, generator=rows[i].generator)[0]
    return tokens


class ContinuousEngine(EngineThread):
    """The engine thread for transformers models: step-level batching (see the module docstring)."""

    def __init__(
        self, model: Any, tokenizer: Any, max_batch: int = 32, window_s: float = 0.010, queue_size: int = 256
    ) -> None:
        super().__init__(max_batch, window_s, queue_size)
        self.model, self.tokenizer = model, tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.waiting: deque[Row] = deque()
        self.running = RunningBatch(model, max_batch)
        self._head: tuple[list[int], KV] | None = None  # the last shared prompt beginning and its keys/values
        self._last_prompt: list[int] | None = None
        self.min_prefill_rows = max(1, max_batch // 4)  # see _admit
        self.max_wait_steps = 3
        self._waiting_since: int | None = None  # the step at which the oldest waiting row was seen
        self._admitting: list[Row] = []
        self.steps = 0  # decoding steps, and the rows they decoded (mean batch = row_steps / steps)
        self.row_steps = 0

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "running": self.running.size, "waiting": len(self.waiting),
                "steps": self.steps, "row_steps": self.row_steps}  # fmt: skip

    def _run(self) -> None:
        stopping = False
        with torch.inference_mode():
            while not (stopping and not self.running.size and not self.waiting):
                stopping = self._take(block=not self.running.size and not self.waiting) or stopping
                try:
                    self.iterate()
                except Exception as exc:  # keep serving: fail the requests in flight, start afresh
                    log.exception("decoding step failed")
                    fail_jobs([*self.running.rows, *self._admitting, *self.waiting], exc)
                    self.waiting.clear()
                    self._admitting = []
                    self.running = RunningBatch(self.model, self.max_batch)
                    self._waiting_since = None

    def iterate(self) -> None:
        """One round of the engine: let waiting rows join, then decode one step of the batch."""
        self._admit()
        if self.running.size:
            self._step()

    def _take(self, block: bool) -> bool:
        """Move queued jobs' rows to ``waiting``; True once asked to stop."""
        if block:
            first = self._queue.get()
            if first is None:
                return True
            jobs, stopping = self._collect(first)  # an idle engine waits a window for a burst to gather
        else:
            # Only what can join soon leaves the bounded queue: the rest stays there, so a full
            # queue still answers 503 and /health's "queued" is the real backlog.
            jobs, stopping = [], False
            while len(self.waiting) + sum(len(j.rows) for j in jobs) < self.running.free:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
        for job in jobs:
            if not job.cancelled.is_set():  # a client that left while queued costs nothing
                self.waiting.extend(job.rows)
        return stopping

    def _admit(self) -> None:
        """Prefill waiting rows into the free slots, in groups of similar prompt length.

        While a batch is decoding, rows are let in once a few have gathered (or the first has
        waited a few steps): every prefill is a forward pass with a fixed cost, so prefilling
        rows one by one as they trickle in would spend that cost per row.
        """
        if not self.waiting:
            return
        if self._waiting_since is None:
            self._waiting_since = self.steps
        gathered = len(self.waiting) >= min(self.min_prefill_rows, self.running.free)
        if self.running.size and not gathered and self.steps - self._waiting_since < self.max_wait_steps:
            return
        take: list[Row] = []
        while self.waiting and len(take) < self.running.free:
            row = self.waiting.popleft()
            if row.job is not None and row.job.cancelled.is_set():
                self._finish(row, "cancelled")
            else:
                take.append(row)
        take.sort(key=lambda r: len(r.prompt_ids))
        self._admitting = take  # out of the queue, not yet in the batch: failed too if prefill fails
        group: list[Row] = []
        for row in take:
            # Rows are padded to the group's longest prompt; a new group (a forward pass more) is
            # worth it only when this row would add more padding than a forward pass costs.
            width = len(row.prompt_ids)
            if group and len(group) * (width - len(group[-1].prompt_ids)) > PAD_TOKENS_PER_FORWARD:
                self._prefill(group)
                group = []
            group.append(row)
        if group:
            self._prefill(group)
        self._admitting = []
        self._waiting_since = None if not self.waiting else self.steps

    def _shared_head(self, prompts: list[list[int]]) -> tuple[int, KV | None]:
        """How many first tokens to take from a shared head, and its keys/values if already computed."""
        cap = min(len(p) for p in prompts) - 1  # every row keeps a token of its own
        common = os.path.commonprefix(prompts)
        if self._head is not None:
            tokens, kv = self._head
            shared = min(len(os.path.commonprefix([common, tokens])), cap)
            if shared >= MIN_SHARED_PREFIX:
                return shared, kv
        if len(prompts) == 1:  # one row alone: share what it has in common with the previous prompt
            common = os.path.commonprefix([prompts[0], self._last_prompt or []])
        shared = min(len(common), cap)
        return (shared, None) if shared >= MIN_SHARED_PREFIX else (0, None)

    def _prefill(self, rows: list[Row]) -> None:
        prompts = [r.prompt_ids for r in rows]
        shared, head = self._shared_head(prompts)
        if shared and head is None:
            head = prefill_head(self.model, prompts[0][:shared])
            self._head = (prompts[0][:shared], head)
        self._last_prompt = prompts[-1]
        cache, cache_kw = fast_greedy_cache(self.model)
        out, mask, positions = prefill_rows(self.model, cache, cache_kw, prompts, self.pad_id, shared, head)
        self.batches += 1
        for row in rows:
            if row.job is not None and row.job.sampling.seed is not None and not row.job.sampling.greedy:
                row.generator = torch.Generator(device=self.model.device).manual_seed(
                    row_seed(row.job.sampling.seed, row.index)
                )
        tokens = choose(out.logits[:, -1], rows)
        keep = [i for i, (row, t) in enumerate(zip(rows, tokens.tolist(), strict=True)) if not self._push(row, t)]
        if keep:
            index = torch.tensor(keep, device=mask.device)
            kv = [(layer.keys[index], layer.values[index]) for layer in cache.layers]
            self.running.add([rows[i] for i in keep], kv, mask[index], positions[index, -1], tokens[index])

    def _step(self) -> None:
        running = self.running
        leaving = []
        for i, row in enumerate(running.rows):
            if row.job is not None and row.job.cancelled.is_set():
                self._finish(row, "cancelled")
                leaving.append(i)
        running.remove(leaving)
        if not running.size:
            return
        logits = running.step()
        self.steps += 1
        self.row_steps += running.size
        tokens = choose(logits, running.rows)
        running.tokens = tokens
        running.remove([i for i, (row, t) in enumerate(zip(running.rows, tokens.tolist(), strict=True))
                        if self._push(row, t)])  # fmt: skip

    def _push(self, row: Row, token: int) -> bool:
        """Give the row its next token; True when that finished it."""
        reason = push_token(row, token, self.tokenizer, self.eos_id)
        if reason is not None:
            self._finish(row, reason)
        return reason is not None

    def _finish(self, row: Row, reason: str) -> None:
        finish_row(row, reason, self.tokenizer)
        self.rows_decoded += 1
        self.rows_cancelled += reason == "cancelled"
