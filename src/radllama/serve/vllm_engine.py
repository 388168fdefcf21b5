"""The server's vLLM engine: rows go to vLLM's async engine (:class:`radllama.inference.vllm_backend.AsyncVllm`,
its engine core in its own process) as token-id requests, and come back step by step.

Our front keeps everything a hospital relies on (API key, body and prompt limits, the trained
prompts and retrieval, /v1/impressions, the page); vLLM does the scheduling: continuous batching,
paged attention, and on GPU CUDA graphs and tensor parallelism. Each row is one vLLM request; its
text reaches a streaming client token by token, and a client that leaves cancels it (vLLM aborts).

Bounded like the transformers engine: ``max_batch`` requests counted as running and ``queue_size``
waiting, beyond that 503 (vLLM itself schedules what runs together). A dead engine process is
reported on /health and answered with 503, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from radllama.inference.base import Decoding
from radllama.inference.vllm_backend import AsyncVllm, on_gpu
from radllama.serve.batching import Job, QueueFull, Row, fail_jobs, stream_text

log = logging.getLogger("radllama.serve")


class EngineDead(Exception):
    """The vLLM engine process is gone."""


class VllmEngine:
    """Jobs in, events out (the same interface as :class:`radllama.serve.batching.Batcher`).

    ``submit`` is called on the app's event loop; the job runs on the engine's loop, and its events
    go back through ``Job.emit`` (thread-safe).
    """

    def __init__(self, engine: AsyncVllm, queue_size: int = 256, max_batch: int = 32, owns_engine: bool = True) -> None:
        self.engine, self.queue_size, self.max_batch, self.owns_engine = engine, queue_size, max_batch, owns_engine
        self.context_window = engine.context_window
        self.seeds_supported = on_gpu()  # a per-request seed kills vLLM's CPU engine (issue #11)
        self._lock = threading.Lock()  # counters are touched from both loops
        self._futures: set[Any] = set()
        self.in_flight = self.peak_in_flight = 0
        self.batches = self.rows_decoded = self.rows_cancelled = 0

    def start(self) -> None:
        pass  # the engine was started (and waited for) when it was built

    def stop(self) -> None:
        for future in list(self._futures):
            future.cancel()  # their jobs are answered 503 (see _run)
        if self.owns_engine:
            self.engine.stop()

    @property
    def alive(self) -> bool:
        return self.engine.alive

    def stats(self) -> dict[str, Any]:
        with self._lock:
            running = min(self.in_flight, self.max_batch)
            return {"running": running, "queued": self.in_flight - running, "batches": self.batches,
                    "rows_decoded": self.rows_decoded, "rows_cancelled": self.rows_cancelled, "engine": "vllm",
                    "peak_in_flight": self.peak_in_flight, "engine_alive": self.alive}  # fmt: skip

    def submit(self, job: Job) -> None:
        """Start the job on the engine's loop, or raise QueueFull / EngineDead at once."""
        if not self.alive:
            raise EngineDead
        with self._lock:
            if self.in_flight >= self.max_batch + self.queue_size:
                raise QueueFull
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        future = self.engine.submit(self._run(job))
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        job.on_cancel.append(future.cancel)  # the client left or timed out: abort its requests

    async def _run(self, job: Job) -> None:
        try:
            await asyncio.gather(*(self._row(row, job) for row in job.rows))
        except asyncio.CancelledError:
            with self._lock:
                self.rows_cancelled += sum(r.finish_reason is None for r in job.rows)
            if not job.cancelled.is_set():  # cancelled by a stopping server, not by its client
                fail_jobs(job.rows, RuntimeError("the server is stopping"), 503)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is answered, the engine keeps serving
            dead = not self.alive
            log.error("vLLM request failed: %s%s", type(exc).__name__, " (the engine process has died)" if dead else "")
            fail_jobs(job.rows, exc, 503 if dead else 500)
            return
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.batches += 1
            self.rows_decoded += len(job.rows)
        job.emit(("done",))

    async def _row(self, row: Row, job: Job) -> None:
        s = job.sampling
        decoding = Decoding(row.max_new_tokens, s.temperature, s.top_p, row.stop, s.seed)
        raw, finish, tokens = "", "length", 0
        async for text, new, reason in self.engine.stream(row.prompt_ids, decoding, row.max_new_tokens,
                                                          f"job{job.id}-{row.index}"):  # fmt: skip
            raw += text
            tokens += new
            finish = reason or finish
            if text:
                row.text = raw
                stream_text(row)
        row.reported_tokens = tokens
        row.text = raw.strip()
        row.finish_reason = "length" if finish == "length" else "stop"
        if job.stream:
            if row.text.startswith(row.sent) and len(row.text) > len(row.sent):
                job.emit(("delta", row.index, row.text[len(row.sent) :]))
                row.sent = row.text
            job.emit(("finish", row.index, row.finish_reason))
