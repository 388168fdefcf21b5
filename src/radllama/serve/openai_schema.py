"""Request bodies of the OpenAI-compatible API (pydantic), and the JSON error shape.

Unknown fields are tolerated (``extra="ignore"``), as OpenAI clients send many; known fields are
strictly typed, so ``"max_tokens": "5"`` or ``"stream": "yes"`` is a 400, never silently coerced.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "code"}}`` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.headers = status, message, code, type_, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": None}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[TextPart]

    def text(self) -> str:
        """The message text (OpenAI's list-of-parts form joined)."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Body):
    include_usage: StrictBool = False


class _Sampling(_Body):
    model: StrictStr | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | None = Field(None, gt=0, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    n: StrictInt = Field(1, ge=1, le=16)
    seed: StrictInt | None = Field(None, ge=-(2**63), lt=2**63)  # int64, as OpenAI's
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    def stop_list(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ApiError(400, "at most 4 stop sequences are allowed", "invalid_value")
        return tuple(s for s in stops if s)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr]

    def prompts(self) -> list[str]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if not prompts or any(not p for p in prompts):
            raise ApiError(400, "prompt must be a non-empty string or a list of them", "invalid_value")
        return prompts


class ImpressionRequest(_Body):
    findings: list[StrictStr] = Field(min_length=1, max_length=64)
    max_tokens: StrictInt = Field(128, ge=1)
    decode: Literal["greedy", "mbr"] = "greedy"  # mbr: minimum Bayes risk (radllama.generate.mbr)
    samples: StrictInt = Field(8, ge=0, le=16)  # mbr: sampled candidates per findings text
    temperature: StrictFloat = Field(0.7, gt=0, le=2)  # mbr: their sampling temperature
    clinical: StrictFloat = Field(0.0, ge=0, le=10)  # mbr: utility lost per consistency flag (issue #20)
    extractive: StrictBool = False  # mbr: the findings' acute sentences compete as a candidate
    retrieved: StrictInt | None = Field(None, ge=0, le=16)  # mbr: nearest training impressions as candidates


def parse_body(raw: bytes, schema: type[BaseModel]) -> Any:
    """Bytes -> validated request, or an ApiError saying exactly what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {exc.start})", "invalid_encoding") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc.msg} at char {exc.pos}", "invalid_json") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_json")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", "invalid_value") from exc
