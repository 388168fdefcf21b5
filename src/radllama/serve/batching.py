"""Requests as an engine sees them (:class:`Job`, :class:`Row`), and the transformers backend's
request-level batching engine.

A request becomes a :class:`Job` of one or more :class:`Row` s (``n`` choices, several prompts);
events ("delta", "finish", "done", "error") reach the request's coroutine through the job. Both
serving engines take jobs: :class:`Batcher` here (transformers) and
:class:`radllama.serve.vllm_engine.VllmEngine` (vLLM in its own process).

:class:`Batcher` waits ``window`` seconds after the first queued request for others (each arrival
extends the wait by a window, at most 5 windows in all), groups rows with compatible sampling (all
greedy rows together; sampled rows by temperature/top_p; a seeded request alone so its seed
reproduces), sorts each group by prompt length and decodes chunks of at most ``max_batch`` rows in
one ``model.generate`` call; a ``StoppingCriteria`` (:class:`BatchTracker`) records each row's
tokens step by step, stops it at its own ``max_tokens``, its stop strings or when its client went
away, and streams text deltas as tokens appear.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from radllama.inference.base import MIN_TEMPERATURE

log = logging.getLogger("radllama.serve")

_job_ids = itertools.count(1)


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen; rows share a batch only when this is equal."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        # Temperatures this small are argmax; dividing logits by them overflows to inf/NaN.
        return self.temperature < MIN_TEMPERATURE

    def group_key(self, job_id: int) -> tuple:
        if self.greedy:
            return ("greedy",)  # seed and top_p do not matter to argmax
        if self.seed is not None:
            return ("seeded", job_id)  # alone, so the same seed gives the same text
        return ("sample", self.temperature, self.top_p)


@dataclass
class Row:
    """One sequence to generate (a request with ``n=3`` or three prompts has three rows)."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    sent: str = ""  # text already streamed to the client
    ended_on_eos: bool = False
    job: Job | None = None
    index: int = 0
    reported_tokens: int | None = None  # completion tokens as counted by an engine that keeps the ids
    decoder: Any = None  # tokenizers' DecodeStream: the text of each new token, not a decode of all so far

    @property
    def completion_tokens(self) -> int:
        """Generated tokens; EOS counts as one, as in radllama.inference."""
        if self.reported_tokens is not None:
            return self.reported_tokens
        return len(self.token_ids) + int(self.ended_on_eos)


class Job:
    """One API request: its rows, sampling, and the asyncio queue its events are delivered to."""

    def __init__(
        self, rows: list[Row], sampling: Sampling, loop: asyncio.AbstractEventLoop, stream: bool = False
    ) -> None:
        self.id = next(_job_ids)
        self.rows = rows
        self.sampling = sampling
        self.stream = stream
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.on_cancel: list[Callable[[], None]] = []  # run on the event loop when cancelled
        self.remaining = len(rows)
        for i, row in enumerate(rows):
            row.job, row.index = self, i

    def cancel(self) -> None:
        """Stop this job's work: skipped if still queued, its rows stopped at the next step if decoding."""
        if self.cancelled.is_set():
            return
        self.cancelled.set()
        for callback in self.on_cancel:
            try:
                self.loop.call_soon_threadsafe(callback)
            except RuntimeError:  # event loop closed
                pass

    def emit(self, event: tuple) -> None:
        """Deliver an event to the request's coroutine (thread-safe; ignored once the loop is gone)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # event loop closed: nobody is listening any more
            pass


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might be the start of a stop string (not streamed yet)."""
    for k in range(min(len(text), max((len(s) for s in stops), default=0) - 1), 0, -1):
        if any(s.startswith(text[-k:]) for s in stops):
            return k
    return 0


def push_token(row: Row, token: int, tokenizer: Any, eos: set[int]) -> str | None:
    """Record a row's next token and stream what became final; the finish reason if it ends here."""
    if token in eos:
        row.ended_on_eos = True
        return "stop"
    row.token_ids.append(token)
    if row.stop or (row.job is not None and row.job.stream):
        row.text = _text_so_far(row, token, tokenizer)
        if row.stop and any(s in row.text for s in row.stop):
            return "stop"
        stream_text(row)
    return "length" if len(row.token_ids) >= row.max_new_tokens else None


def incremental(tokenizer: Any) -> bool:
    """Whether ``tokenizers``' DecodeStream gives exactly what ``tokenizer.decode`` gives: a fast
    tokenizer that does not clean up spaces afterwards (a Python-side step the stream lacks)."""
    return getattr(tokenizer, "backend_tokenizer", None) is not None and not getattr(
        tokenizer, "clean_up_tokenization_spaces", False
    )


def _text_so_far(row: Row, token: int, tokenizer: Any) -> str:
    """The row's text with ``token`` added: one incremental step, or (other tokenizers) a full decode."""
    if row.decoder is None and incremental(tokenizer):
        from tokenizers.decoders import DecodeStream

        row.decoder = DecodeStream(skip_special_tokens=True)
    if row.decoder is None:
        return tokenizer.decode(row.token_ids, skip_special_tokens=True)
    # None while a UTF-8 character is still incomplete (byte-fallback pieces): nothing new yet.
    return row.text + (row.decoder.step(tokenizer.backend_tokenizer, token) or "")


def stream_text(row: Row) -> None:
    """Send the client what became final of ``row.text``."""
    # Stream only text that cannot change: no half UTF-8 character, no possible stop-string
    # start, no leading/trailing whitespace (the final text is stripped, as in the engine).
    text = row.text
    if text.endswith("\ufffd") or row.job is None or not row.job.stream:
        return
    text = text[: len(text) - _held_back(text, row.stop)].lstrip().rstrip()
    if len(text) > len(row.sent) and text.startswith(row.sent):
        row.job.emit(("delta", row.index, text[len(row.sent) :]))
        row.sent = text


def finish_row(row: Row, reason: str, tokenizer: Any) -> None:
    """Set the row's final text (cut at a stop string) and tell its job; the last row ends the job."""
    row.finish_reason = reason
    text = tokenizer.decode(row.token_ids, skip_special_tokens=True)
    cut = min((k for k in (text.find(s) for s in row.stop if s) if k >= 0), default=-1)
    row.text = (text[:cut] if cut >= 0 else text).strip()
    job = row.job
    if job is None:
        return
    if job.stream and reason != "cancelled" and row.text.startswith(row.sent):
        rest = row.text[len(row.sent) :]
        if rest:
            job.emit(("delta", row.index, rest))
        row.sent = row.text
    if job.stream and reason != "cancelled":
        job.emit(("finish", row.index, reason))
    job.remaining -= 1
    if job.remaining == 0:
        job.emit(("done",))


class BatchTracker:
    """Per-row bookkeeping for one ``generate`` call, run as a StoppingCriteria after every step."""

    def __init__(self, rows: list[Row], tokenizer: Any, eos: set[int]) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.eos = eos

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        last = input_ids[:, -1].tolist()
        for row, tok in zip(self.rows, last, strict=True):
            if row.finish_reason is not None:
                continue
            if row.job is not None and row.job.cancelled.is_set():
                reason: str | None = "cancelled"
            else:
                reason = push_token(row, tok, self.tokenizer, self.eos)
            if reason is not None:
                finish_row(row, reason, self.tokenizer)
        done = [row.finish_reason is not None for row in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def finish_all(self) -> None:
        """Rows still open when ``generate`` returned hit the overall token limit."""
        for row in self.rows:
            if row.finish_reason is None:
                finish_row(row, "length", self.tokenizer)


class TransformersDecoder:
    """Decodes one batch of rows with ``model.generate`` (the options of the transformers backend)."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any) -> None:
        from radllama.inference.transformers_backend import context_window
        from radllama.models.loading import stop_token_ids

        self.model = model
        self.tokenizer = tokenizer
        self.context_window = context_window(model, tokenizer)
        self.eos = set(stop_token_ids(model, tokenizer))

    def decode(self, rows: list[Row], sampling: Sampling) -> None:
        import torch
        from transformers import StoppingCriteriaList

        from radllama.inference.base import Decoding
        from radllama.inference.transformers_backend import generate_kwargs

        tok = self.tokenizer
        # Left padding built from the ids tokenised on the request path, as tokenizer(padding=True)
        # would (the engine thread never touches the tokenizer's mutable padding state).
        width = max(len(r.prompt_ids) for r in rows)
        ids = [[tok.pad_token_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows]
        mask = [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows]
        device = self.model.device
        tracker = BatchTracker(rows, tok, self.eos)
        decoding = Decoding(temperature=0.0 if sampling.greedy else sampling.temperature, top_p=sampling.top_p)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            self.model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=max(r.max_new_tokens for r in rows),
                stopping_criteria=StoppingCriteriaList([tracker]),
                eos_token_id=sorted(self.eos),
                **generate_kwargs(tok, decoding),
            )
        tracker.finish_all()


class QueueFull(Exception):
    """The request queue is at its bound."""


class EngineThread:
    """The one thread that owns the model: a bounded job queue, counters, start and stop.

    Subclasses decide how queued jobs are decoded (:class:`Batcher`: a batch of whole requests at a time).
    """

    def __init__(self, max_batch: int = 32, window_s: float = 0.010, queue_size: int = 256) -> None:
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._serve, name="radllama-engine", daemon=True)
        self.batches = 0  # decoded batches (for tests and /health)
        self.rows_decoded = 0
        self.rows_cancelled = 0  # rows stopped early because their client left
        self.running = 0  # rows being decoded now

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the engine thread to finish the work it has started, then end."""
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            pass
        self._thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        """Queue a job, or raise QueueFull at once (the caller answers 503)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full as exc:
            raise QueueFull from exc

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        """Counters for /health and the benchmarks."""
        return {"running": self.running, "queued": self.queued, "batches": self.batches,
                "rows_decoded": self.rows_decoded, "rows_cancelled": self.rows_cancelled}  # fmt: skip

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        # Sliding window: keep collecting while requests keep coming (each arrival extends the wait
        # by one window, up to 5 windows in all), so a burst of clients that trickles in under load
        # still lands in one batch; whatever is already queued is always taken.
        jobs, rows = [first], len(first.rows)
        now = time.monotonic()
        deadline, cap = now + self.window_s, now + 5 * self.window_s
        while rows < self.max_batch:
            remaining = min(deadline, cap) - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            rows += len(job.rows)
            deadline = time.monotonic() + self.window_s
        return jobs, False

    def _serve(self) -> None:
        self._run()
        # Stopped: jobs queued after the stop request are answered rather than left to time out.
        left: list[Row] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                left += job.rows
        fail_jobs(left, RuntimeError("the server is stopping"), 503)

    def _run(self) -> None:
        """Decode queued jobs until the stop request (``None``) is taken from the queue."""
        raise NotImplementedError


def fail_jobs(rows: Sequence[Row], exc: Exception, status: int = 500) -> None:
    """Answer the jobs of these rows with an error event (the engine keeps serving the others)."""
    for job in {id(r.job): r.job for r in rows if r.job is not None}.values():
        job.emit(("error", f"generation failed: {type(exc).__name__}", status))


class Batcher(EngineThread):
    """Request-level batching: collect the requests that arrive together, decode them in one call.

    The transformers backend's serving engine (``model.generate`` through :class:`TransformersDecoder`).
    """

    def __init__(
        self,
        decode: Callable[[list[Row], Sampling], None],
        max_batch: int = 32,
        window_s: float = 0.010,
        queue_size: int = 256,
    ) -> None:
        super().__init__(max_batch, window_s, queue_size)
        self._decode = decode

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            jobs, stopping = self._collect(first)
            groups: dict[tuple, list[Row]] = {}
            for job in jobs:
                if job.cancelled.is_set():
                    continue  # its client left while it waited
                groups.setdefault(job.sampling.group_key(job.id), []).extend(job.rows)
            for rows in groups.values():
                rows.sort(key=lambda r: len(r.prompt_ids))  # similar lengths: less padding
                for start in range(0, len(rows), self.max_batch):
                    self._decode_chunk(rows[start : start + self.max_batch])

    def _decode_chunk(self, rows: list[Row]) -> None:
        sampling = rows[0].job.sampling if rows[0].job else Sampling()
        started = time.perf_counter()
        self.running = len(rows)
        try:
            self._decode(rows, sampling)
        except Exception as exc:  # keep serving: fail only the requests of this batch
            log.exception("batch of %d rows failed", len(rows))
            fail_jobs(rows, exc)
            return
        finally:
            self.running = 0
        self.batches += 1
        self.rows_decoded += len(rows)
        self.rows_cancelled += sum(r.finish_reason == "cancelled" for r in rows)
        tokens = sum(len(r.token_ids) for r in rows)
        log.info("batch: %d rows, %d new tokens, %.2fs", len(rows), tokens, time.perf_counter() - started)
