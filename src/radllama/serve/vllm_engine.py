"""The server's vLLM engine: rows go to vLLM's OpenAI server (a child process, see
:class:`radllama.inference.vllm_backend.VllmServer`) as token-id completions, streamed back.

Our front keeps everything a hospital relies on (API key, body and prompt limits, the trained
prompts and retrieval, /v1/impressions, the page); vLLM does the scheduling: paged attention,
continuous batching, and on GPU CUDA graphs and tensor parallelism. Each row is one streamed
upstream request, so its text reaches the client token by token, and a client that leaves
closes it (vLLM aborts the request).

Bounded like the transformers engine: ``max_batch`` requests counted as running and ``queue_size``
waiting, beyond that 503 (vLLM itself schedules what runs together).
A dead engine process is reported on /health and answered with 503, never a hang.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from radllama.inference.base import Decoding
from radllama.inference.vllm_backend import VllmServer, on_gpu, sampling_options
from radllama.serve.batching import Job, QueueFull, Row, fail_jobs, stream_text

log = logging.getLogger("radllama.serve")


class EngineDead(Exception):
    """The vLLM engine process is gone."""


class VllmEngine:
    """Jobs in, events out, over an async HTTP client to the engine process (same interface as Batcher)."""

    def __init__(
        self, server: VllmServer, queue_size: int = 256, max_batch: int = 32, owns_server: bool = True
    ) -> None:
        self.server, self.queue_size, self.max_batch, self.owns_server = server, queue_size, max_batch, owns_server
        self.context_window = server.context_window
        self.seeds_supported = on_gpu()  # a per-request seed kills vLLM's CPU engine (issue #11)
        self._client: Any = None
        self._tasks: set[asyncio.Task] = set()
        self.in_flight = 0
        self.batches = self.rows_decoded = self.rows_cancelled = 0

    def start(self) -> None:
        pass  # the process was started (and waited for) when the server was built

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.owns_server:
            self.server.stop()

    @property
    def alive(self) -> bool:
        return self.server.alive

    def stats(self) -> dict[str, Any]:
        running = min(self.in_flight, self.max_batch)
        return {"running": running, "queued": self.in_flight - running, "batches": self.batches,
                "rows_decoded": self.rows_decoded,
                "rows_cancelled": self.rows_cancelled, "engine": "vllm",
                "engine_alive": self.alive}  # fmt: skip

    def submit(self, job: Job) -> None:
        """Start the job's rows upstream (called on the event loop), or raise QueueFull / EngineDead."""
        if not self.alive:
            raise EngineDead
        if self.in_flight >= self.max_batch + self.queue_size:
            raise QueueFull
        import httpx

        if self._client is None:  # made on the loop that uses it
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=512)
            self._client = httpx.AsyncClient(base_url=self.server.url, headers=self.server.headers(),
                                             timeout=httpx.Timeout(None, connect=5), limits=limits)  # fmt: skip
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        rows = [asyncio.ensure_future(self._row(row, job)) for row in job.rows]
        left = asyncio.Event()
        job.on_cancel.append(left.set)
        watch = asyncio.ensure_future(left.wait())
        try:
            await asyncio.wait([asyncio.gather(*rows, return_exceptions=True), watch],
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if job.cancelled.is_set():
                for t in rows:
                    t.cancel()  # closing the stream makes vLLM abort the request
                self.rows_cancelled += sum(r.finish_reason is None for r in job.rows)
                return
            errors = [t.exception() for t in rows if not t.cancelled() and t.exception() is not None]
            if errors:
                await self._fail(job, errors[0])
                return
            self.batches += 1
            self.rows_decoded += len(job.rows)
            job.emit(("done",))
        except asyncio.CancelledError:
            fail_jobs(job.rows, RuntimeError("the server is stopping"), 503)
            raise
        finally:
            self.in_flight -= 1
            watch.cancel()

    async def _fail(self, job: Job, exc: BaseException) -> None:
        """Answer a failed job: 503 when the engine is unreachable (a dead process), else 500."""
        import httpx

        if isinstance(exc, httpx.TransportError):
            for _ in range(20):  # a killed process drops its connections a moment before it is reaped
                if not self.alive:
                    break
                await asyncio.sleep(0.1)
            log.error("the vLLM engine is unreachable (%s; process %s)", type(exc).__name__,
                      "exited" if not self.alive else "running")  # fmt: skip
            fail_jobs(job.rows, exc, 503)
        else:
            log.error("upstream request failed: %s", type(exc).__name__)
            fail_jobs(job.rows, exc, 500)

    async def _row(self, row: Row, job: Job) -> None:
        s = job.sampling
        decoding = Decoding(row.max_new_tokens, s.temperature, s.top_p, row.stop, s.seed)
        body = {"model": self.server.model, "prompt": row.prompt_ids, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        body.update(sampling_options(decoding, row.max_new_tokens))
        body = {k: v for k, v in body.items() if v is not None}
        raw, finish = "", "length"
        async with self._client.stream("POST", "/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                detail = (await resp.aread())[:300].decode(errors="replace")
                raise RuntimeError(f"engine answered {resp.status_code}: {detail}")
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    row.reported_tokens = int(chunk["usage"]["completion_tokens"])
                for choice in chunk.get("choices", []):
                    raw += choice.get("text") or ""
                    finish = choice.get("finish_reason") or finish
                    row.text = raw
                    stream_text(row)
        row.text = raw.strip()
        row.finish_reason = "length" if finish == "length" else "stop"
        if job.stream:
            if row.text.startswith(row.sent) and len(row.text) > len(row.sent):
                job.emit(("delta", row.index, row.text[len(row.sent) :]))
                row.sent = row.text
            job.emit(("finish", row.index, row.finish_reason))
