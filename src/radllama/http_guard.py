"""What both web apps (``radllama serve``, ``radllama review serve``) refuse before any route runs.

- **DNS rebinding**: a web page whose domain is made to resolve to 127.0.0.1 reaches a loopback
  server from the user's own browser, with its own name in the ``Host`` header. Only the loopback
  names, the bound address and names given with ``--allowed-host`` are answered (400 otherwise).
- **Cross-site writes**: a page on another site may send a form or ``text/plain`` POST without a
  CORS preflight. A request that changes anything must be JSON (415 otherwise) and must not come
  from another site (an ``Origin`` that is not ours or an allowed CORS origin, or
  ``Sec-Fetch-Site: cross-site``: 403).
- **Body size**: over ``max_body_bytes`` is 413, by ``Content-Length`` or while reading a chunked
  body; the body is never echoed.

Plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task group per request, and an
app that uses it sees :class:`BodyTooLarge` wrapped in an exception group (a 400, not a 413).
Starlette's ``TrustedHostMiddleware`` cannot be used as is: it cuts the port at the first colon,
which breaks ``[::1]:8000``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response

DEFAULT_MAX_BODY_BYTES = 1_000_000  # --max-body-bytes of both servers: far above any valid request
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

ErrorResponse = Callable[[int, str, str], Response]


def host_name(value: str) -> str:
    """The name in a ``Host`` header or URL authority: lower case, no port, no IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def trusted_hosts(bound_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a server bound to ``bound_host`` answers to: loopback, the bound address, ``extra``.

    A wildcard bind (0.0.0.0, ::) also answers to this machine's own host names; any other name
    (a reverse proxy's, a DNS alias) must be given in ``extra`` (``--allowed-host``).
    """
    names = {*LOOPBACK_NAMES, host_name(bound_host), *(host_name(h) for h in extra)}
    if host_name(bound_host) in _WILDCARDS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names - {""})


def json_error(status: int, message: str, code: str) -> Response:
    """The default error body (FastAPI's ``{"detail": ...}``)."""
    return JSONResponse({"detail": message}, status_code=status)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes the limit mid-read; FastAPI re-raises its own
    ``HTTPException`` from body parsing, so the app's handler for 413 answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit:,} bytes")


class SiteGuard:
    """Host allow-list, same-site JSON-only writes and the body-size limit (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        allowed_hosts: frozenset[str],
        max_body_bytes: int,
        allowed_origins: Iterable[str] = (),
        error: ErrorResponse = json_error,
        response_headers: dict[str, str] | None = None,
    ) -> None:
        """``response_headers`` are set on every response (refusals included)."""
        self.app, self.allowed_hosts, self.max_body_bytes = app, allowed_hosts, max_body_bytes
        self.allowed_origins, self.error = frozenset(o.rstrip("/") for o in allowed_origins), error
        self.response_headers = response_headers or {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start" and self.response_headers:
                MutableHeaders(scope=message).update(self.response_headers)
            await send(message)

        refusal = self.refusal(Headers(scope=scope), scope["method"])
        if refusal is not None:
            return await self.error(*refusal)(scope, receive, send_with_headers)
        await self.app(scope, self.limited(receive), send_with_headers)

    def refusal(self, headers: Headers, method: str) -> tuple[int, str, str] | None:
        """(status, message, code) for a request to refuse, or None. Messages never echo the request."""
        if host_name(headers.get("host", "")) not in self.allowed_hosts:
            return 400, "this server does not answer to that Host name (see --allowed-host)", "invalid_host"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return 413, f"request body over {self.max_body_bytes:,} bytes", "body_too_large"
        if method in _SAFE_METHODS:
            return None
        origin = headers.get("origin")
        cross = origin is not None and not self.same_site(origin)
        if cross or (origin is None and headers.get("sec-fetch-site") == "cross-site"):
            return 403, "cross-site request refused", "cross_site_request"
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return 415, "send the request body as JSON (Content-Type: application/json)", "unsupported_media_type"
        return None

    def same_site(self, origin: str) -> bool:
        """An Origin this server trusts: one of its own names, or an allowed CORS origin."""
        if origin.rstrip("/") in self.allowed_origins:
            return True
        try:
            return host_name(urlsplit(origin).netloc) in self.allowed_hosts
        except ValueError:
            return False

    def limited(self, receive: Any) -> Any:
        """``receive`` that raises :class:`BodyTooLarge` past the limit (a chunked body has no length)."""
        size = 0

        async def receive_limited() -> dict:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return receive_limited
