"""What the API serves: a loaded model, its prompt style, and the engine thread batching its work.

How requests become prompts (so the server answers exactly as training taught the model):

- ``/v1/impressions`` renders each findings text with the model's ``PromptStyle.render`` and its
  retrieval index — the same prompts as ``radllama generate`` / ``generate_impressions``.
- ``/v1/chat/completions`` renders the messages with ``PromptStyle.render_messages`` (the tokenizer's
  chat template). When the request has no system message, the style's system prompt (the one the
  model was trained with) is put first. No retrieval is done for chat.
- ``/v1/completions`` sends the prompt text as is (no template).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radllama.generate.impressions import clean_findings, impression_prompts
from radllama.models.loading import LoadedModel
from radllama.serve.batching import Batcher, EngineThread, TransformersDecoder, context_window
from radllama.serve.continuous import ContinuousEngine, supports
from radllama.serve.openai_schema import ApiError

DEFAULT_MAX_TOKENS = 128  # as radllama.generate's default: an impression is short


@dataclass
class ServeSettings:
    """Server options (see ``radllama serve --help``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 32
    batch_window_ms: float = 10.0
    queue_size: int = 256
    timeout_s: float = 60.0
    max_body_bytes: int = 1_000_000
    log_content: bool = False
    cors_origins: list[str] = field(default_factory=list)


class ModelService:
    """The model plus its engine thread; request handlers only tokenise and queue jobs."""

    def __init__(
        self, loaded: LoadedModel, settings: ServeSettings, decoder: Any | None = None, continuous: bool = True
    ) -> None:
        """``decoder`` (vLLM) decodes whole batches of requests; otherwise the transformers model is
        served with step-level continuous batching where it supports it (``continuous``), else with
        request-level batches through ``model.generate``."""
        self.loaded = loaded
        self.name = loaded.name
        self.tokenizer = loaded.tokenizer
        self.settings = settings
        self.created = int(time.time())
        window = settings.batch_window_ms / 1000
        self.engine: EngineThread
        if decoder is None and continuous and supports(loaded.model):
            self.engine = ContinuousEngine(loaded.model, loaded.tokenizer, settings.max_batch, window,
                                           settings.queue_size)  # fmt: skip
            self.context_window = context_window(loaded.model, loaded.tokenizer)
        else:
            decoder = decoder or TransformersDecoder(loaded.model, loaded.tokenizer)
            self.engine = Batcher(decoder.decode, settings.max_batch, window, settings.queue_size)
            self.context_window = decoder.context_window
        self._pending_prompts: list[tuple[list[str], asyncio.Future]] = []  # see impression_prompts
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe to use from many threads at once

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> None:
        self.engine.stop()

    def check_model(self, model: str | None) -> None:
        """Unknown model names are a 404, as with OpenAI; omitting it is allowed."""
        if model is not None and model not in (self.name, "radllama"):
            raise ApiError(404, f"model '{model}' is not served here; GET /v1/models lists '{self.name}'",
                           "model_not_found")  # fmt: skip

    def encode(self, text: str) -> list[int]:
        with self._tok_lock:
            return self.tokenizer(text, add_special_tokens=False).input_ids

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render a conversation with the model's prompt style (its system prompt first by default)."""
        if messages[-1]["role"] != "user":
            raise ApiError(400, "the last message must be from the user", "invalid_value")
        style = self.loaded.style
        if messages[0]["role"] != "system" and style.system:
            messages = [{"role": "system", "content": style.system}, *messages]
        try:
            return style.render_messages(self.tokenizer, messages)
        except Exception as exc:  # jinja2 raise_exception in the chat template, e.g. roles out of order
            raise ApiError(400, f"cannot render these messages: {exc}", "invalid_value") from exc

    async def impression_prompts(self, findings: list[str]) -> list[str]:
        """The trained prompts (style + retrieval index) for findings texts.

        Requests whose prompts are wanted in the same event-loop turn are rendered together:
        a retrieval call has a fixed cost well above its per-query cost, and under load (many
        clients) several requests arrive at once.
        """
        from radllama.errors import RadLlamaError

        try:
            cleaned = [clean_findings(f) for f in findings]
        except RadLlamaError as exc:
            raise ApiError(400, str(exc), "invalid_value") from exc
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending_prompts.append((cleaned, future))
        if len(self._pending_prompts) == 1:
            loop.call_soon(self._render_pending)
        return await future

    def _render_pending(self) -> None:
        pending, self._pending_prompts = self._pending_prompts, []
        try:
            prompts = impression_prompts(self.loaded, [f for findings, _ in pending for f in findings])
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for findings, future in pending:
            if not future.done():  # a request cancelled meanwhile has no one waiting
                future.set_result(prompts[start : start + len(findings)])
            start += len(findings)

    def budget(self, prompt_ids: list[int], max_tokens: int | None) -> int:
        """New-token limit for a prompt, or a 400 when it cannot fit the context window."""
        if not prompt_ids:
            raise ApiError(400, "the prompt has no tokens", "invalid_value")
        room = self.context_window - len(prompt_ids)
        if room < 1:
            raise ApiError(400, f"the prompt is {len(prompt_ids)} tokens; this model's context window is "
                           f"{self.context_window} tokens", "context_length_exceeded")  # fmt: skip
        if max_tokens is None:
            return min(DEFAULT_MAX_TOKENS, room)
        if max_tokens > room:
            raise ApiError(400, f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                           f"context window of {self.context_window} tokens", "context_length_exceeded")  # fmt: skip
        return max_tokens


def load_service(
    model_dir: Path, adapter_dir: Path | None, settings: ServeSettings, backend: str = "transformers"
) -> ModelService:
    """Load the model for the chosen backend (vLLM imported only when asked for)."""
    if backend == "vllm":
        from radllama.serve.vllm_backend import load_vllm

        loaded, decoder = load_vllm(model_dir, adapter_dir)
        return ModelService(loaded, settings, decoder)
    from radllama.models.loading import load_for_inference

    return ModelService(load_for_inference(model_dir, adapter_dir), settings)
