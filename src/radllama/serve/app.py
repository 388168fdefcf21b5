"""The FastAPI app: OpenAI-compatible endpoints, /v1/impressions, /health and the assistant page.

Privacy: nothing here logs prompt or answer text unless ``--log-content`` is given; log lines carry
request ids, token counts and timings only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders

from radllama.consistency import FIELDS as CONSISTENCY_FIELDS
from radllama.consistency import check
from radllama.generate.impressions import mbr_pool
from radllama.generate.mbr import MbrSettings, mbr_choose
from radllama.http_guard import BodyTooLarge, SiteGuard, trusted_hosts
from radllama.inference.base import Completion
from radllama.serve.batching import Job, QueueFull, Row, Sampling
from radllama.serve.openai_schema import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    ImpressionRequest,
    parse_body,
)
from radllama.serve.service import ModelService
from radllama.serve.vllm_engine import EngineDead

log = logging.getLogger("radllama.serve")
MAX_ROWS_PER_REQUEST = 64  # prompts x n of one /v1/completions request (as /v1/impressions' 64 findings)
STATIC_DIR = resources.files("radllama.serve") / "static"
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(service: ModelService) -> FastAPI:
    """The app around a loaded :class:`ModelService` (its engine thread runs while the app does)."""
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="RadLlama assistant", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.service = service
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    app.add_middleware(Guard, api_key=settings.api_key)
    # Outermost: a foreign Host, a cross-site write or an oversized body never reaches the key check or a route.
    app.add_middleware(
        SiteGuard,
        allowed_hosts=trusted_hosts(settings.host, settings.allowed_hosts),
        max_body_bytes=settings.max_body_bytes,
        allowed_origins=settings.cors_origins,
        error=lambda status, message, code: _error(ApiError(status, message, code)),
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _error(ApiError(413, exc.detail, "body_too_large"))

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(ApiError(404, f"no such endpoint: {request.method} {request.url.path}", "not_found"))

    @app.exception_handler(405)
    async def bad_method(request: Request, exc: Exception) -> JSONResponse:
        return _error(ApiError(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"))

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = service.healthy()
        body = {"status": "ok" if ok else "error", "model": service.name, "backend": service.backend,
                **service.engine.stats(), "phi_guard": service.guard_counter.stats()}  # fmt: skip
        if not ok:
            body["detail"] = "the inference engine process has exited; restart the server"
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        # OpenAI's model object plus "card" (the official client keeps extra fields): what the model is.
        entry = {"id": service.name, "object": "model", "created": service.created, "owned_by": "radllama",
                 "card": service.card}  # fmt: skip
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        req: ChatRequest = parse_body(await request.body(), ChatRequest)
        service.check_model(req.model)
        prompt = service.chat_prompt([{"role": m.role, "content": m.text()} for m in req.messages])
        (ids,) = await service.encode_many([prompt])
        limit = service.budget(ids, req.max_completion_tokens or req.max_tokens)
        rows = [Row(ids, limit, req.stop_list()) for _ in range(req.n)]
        return await _answer(request, service, "chat", req, rows, len(ids), _log_text(settings, prompt), prompt)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response:
        req: CompletionRequest = parse_body(await request.body(), CompletionRequest)
        service.check_model(req.model)
        rows, prompt_tokens = [], 0
        prompts = req.prompts()
        if len(prompts) * req.n > MAX_ROWS_PER_REQUEST:
            raise ApiError(400, f"{len(prompts)} prompts x n={req.n} is over {MAX_ROWS_PER_REQUEST} completions "
                           "per request; split it", "too_many_completions")  # fmt: skip
        for ids in await service.encode_many(prompts):
            limit = service.budget(ids, req.max_tokens)
            rows += [Row(ids, limit, req.stop_list()) for _ in range(req.n)]
            prompt_tokens += len(ids)
        content = _log_text(settings, req.prompt)
        return await _answer(request, service, "text", req, rows, prompt_tokens, content, "\n".join(prompts))

    @app.post("/v1/impressions")
    async def impressions(request: Request) -> dict[str, Any]:
        req: ImpressionRequest = parse_body(await request.body(), ImpressionRequest)
        prompts, shown = await service.impression_prompts(req.findings)
        rows = [Row(ids, service.budget(ids, req.max_tokens)) for ids in await service.encode_many(prompts)]
        samples = req.samples if req.decode == "mbr" else 0
        if len(rows) * (1 + samples) > 4 * MAX_ROWS_PER_REQUEST:
            raise ApiError(400, f"{len(rows)} findings x {1 + samples} candidates is over {4 * MAX_ROWS_PER_REQUEST} "
                           "per request; split it", "too_many_completions")  # fmt: skip
        # Before any decoding; the index is read on the first request that asks for it (off the event loop).
        if req.decode == "mbr" and req.retrieved and await asyncio.to_thread(service.loaded.index_retriever) is None:
            raise ApiError(400, f"retrieved={req.retrieved}: this model has no retrieval index", "no_retrieval_index")
        mbr = MbrSettings(samples=samples, temperature=req.temperature, retrieved=req.retrieved,
                          clinical=req.clinical, extractive=req.extractive)  # fmt: skip
        sampled = [Row(r.prompt_ids, r.max_new_tokens) for r in rows for _ in range(samples)]
        started = time.perf_counter()
        jobs = [_submit(service, rows, Sampling(), stream=False)]
        if sampled:  # unseeded: a seeded job runs alone, outside the shared batches
            jobs.append(_submit(service, sampled, Sampling(mbr.temperature, mbr.top_p), stream=False))
        try:
            for job in jobs:
                await _wait_done(request, job, settings.timeout_s)
        finally:
            for job in jobs:
                job.cancel()
        _log_done("impressions", jobs[0], started, settings, req.findings)
        texts = [r.text for r in rows]
        if req.decode == "mbr":
            pool = mbr_pool(service.loaded, req.findings, shown, mbr)
            picked = mbr_choose([_as_completion(r) for r in rows], [_as_completion(r) for r in sampled], pool, mbr,
                                req.findings)  # fmt: skip
            texts = [c.text for c in picked]
        texts = service.guard(texts, req.findings)
        checks = [check(f, t) for f, t in zip(req.findings, texts, strict=True)]
        return {
            "object": "impressions",
            "model": service.name,
            "impressions": texts,
            # The consistency check, one list per impression: what a radiologist must look at twice.
            **{key: [c[key] for c in checks] for key in CONSISTENCY_FIELDS},
            "usage": _usage(sum(len(r.prompt_ids) for r in rows), rows + sampled),
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


class Guard:
    """API key on /v1/ and security headers on the pages (Host, cross-site and size checks: SiteGuard).

    Plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task group and a stream
    per request, a measurable share of a request's CPU on a small machine (bench_serve.py).
    """

    def __init__(self, app: Any, api_key: str | None) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers, api = Headers(scope=scope), scope["path"].startswith("/v1/")
        # A browser's CORS preflight carries no credentials by design: it passes to the CORS layer
        # (which answers it, or the app says 405); the real request that follows still needs the key.
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if api and self.api_key and not preflight and not _authorized(headers.get("authorization", ""), self.api_key):
            err = ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "invalid_api_key")
            return await _error(err, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if api:
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(_PAGE_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _authorized(header: str, key: str) -> bool:
    scheme, _, given = header.partition(" ")
    # Constant-time comparison: response timing must not reveal how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers={**(exc.headers or {}), **(headers or {})})


def _log_text(settings: Any, text: Any) -> Any:
    return text if settings.log_content else None


def _log_done(kind: str, job: Job, started: float, settings: Any, content: Any = None) -> None:
    tokens = sum(r.completion_tokens for r in job.rows)
    log.info("%s job=%d rows=%d completion_tokens=%d %.2fs", kind, job.id, len(job.rows), tokens,
             time.perf_counter() - started)  # fmt: skip
    if settings.log_content:  # opt-in only: report text is patient data
        log.info("job=%d content=%r answers=%r", job.id, content, [r.text for r in job.rows])


def _submit(service: ModelService, rows: list[Row], sampling: Sampling, stream: bool) -> Job:
    service.check_sampling(sampling)
    job = Job(rows, sampling, asyncio.get_running_loop(), stream)
    try:
        service.engine.submit(job)
    except EngineDead as exc:
        raise ApiError(503, "the inference engine process has exited; the server cannot answer",
                       "engine_dead", "server_error") from exc  # fmt: skip
    except QueueFull as exc:
        raise ApiError(503, "the server is busy (request queue full); retry shortly", "server_busy",
                       "server_error", {"Retry-After": "1"}) from exc  # fmt: skip
    return job


async def _next_event(request: Request, job: Job, deadline: float) -> tuple:
    """The job's next event; 504 past the deadline; the job is cancelled if its client left."""
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            job.cancel()
            raise ApiError(504, "generation timed out", "timeout", "server_error")
        try:
            event = await asyncio.wait_for(job.events.get(), timeout=min(0.25, remaining))
        except TimeoutError:
            if await request.is_disconnected():
                job.cancel()  # nobody will read the answer: free its batch slot
                raise ApiError(499, "client closed the request", "client_closed") from None
            continue
        if event[0] == "error":
            status = event[2] if len(event) > 2 else 500
            raise ApiError(status, event[1], "engine_unavailable" if status == 503 else "generation_failed",
                           "server_error")  # fmt: skip
        return event


async def _wait_done(request: Request, job: Job, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while (await _next_event(request, job, deadline))[0] != "done":
            pass
    except BaseException:
        job.cancel()
        raise


def _as_completion(row: Row) -> Completion:
    return Completion(row.text, len(row.prompt_ids), row.completion_tokens, row.finish_reason or "stop")


def _usage(prompt_tokens: int, rows: list[Row]) -> dict[str, int]:
    completion = sum(r.completion_tokens for r in rows)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


async def _answer(
    request: Request, service: ModelService, kind: str, req: Any, rows: list[Row], prompt_tokens: int, content: Any,
    source: str,
) -> Response:  # fmt: skip
    """Queue the rows, then answer in one JSON body or as server-sent events.

    ``source`` is the request's text: the PHI guard checks the answers against it (streamed answers are
    checked once sent, so they are counted and logged but cannot be redacted).
    """
    sampling = Sampling(req.temperature or 0.0, req.top_p if req.top_p is not None else 1.0, req.seed)
    started = time.perf_counter()
    job = _submit(service, rows, sampling, req.stream)
    rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    head = {"id": rid, "created": int(time.time()), "model": service.name}
    settings = service.settings
    if not req.stream:
        await _wait_done(request, job, settings.timeout_s)
        _log_done(kind, job, started, settings, content)
        texts = service.guard([r.text for r in rows], [source] * len(rows))
        if kind == "chat":
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                        "finish_reason": r.finish_reason}
                       for i, (r, t) in enumerate(zip(rows, texts, strict=True))]  # fmt: skip
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": r.finish_reason}
                       for i, (r, t) in enumerate(zip(rows, texts, strict=True))]  # fmt: skip
            obj = "text_completion"
        return JSONResponse({**head, "object": obj, "choices": choices, "usage": _usage(prompt_tokens, rows)})

    # Streaming: wait for the first event before sending headers, so a timeout is still a 504.
    deadline = asyncio.get_running_loop().time() + settings.timeout_s
    try:
        first = await _next_event(request, job, deadline)
    except BaseException:
        job.cancel()
        raise
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(index: int, text: str | None = None, finish: str | None = None, role: bool = False) -> str:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        payload = {**head, "object": obj, "choices": [choice]}
        if include_usage:
            payload["usage"] = None
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            if kind == "chat":
                for i in range(len(rows)):
                    yield chunk(i, role=True)
            event = first
            while True:
                if event[0] == "delta":
                    yield chunk(event[1], text=event[2])
                elif event[0] == "finish":
                    yield chunk(event[1], finish=event[2])
                elif event[0] == "done":
                    break
                try:
                    event = await _next_event(request, job, deadline)
                except ApiError as exc:  # headers are sent: report in-band, as OpenAI does
                    yield f"data: {json.dumps(exc.body())}\n\n"
                    return
            if include_usage:
                usage = {**head, "object": obj, "choices": [], "usage": _usage(prompt_tokens, rows)}
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"
            _log_done(kind, job, started, settings, content)
            service.guard([r.text for r in rows], [source] * len(rows), sent=True)
        finally:
            job.cancel()  # no-op when finished; stops the rows when the client went away

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
