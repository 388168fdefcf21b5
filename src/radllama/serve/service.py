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
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radllama.deid import GuardCounter
from radllama.generate.impressions import clean_findings, prompts_and_examples
from radllama.http_guard import DEFAULT_MAX_BODY_BYTES
from radllama.models.card import model_card, unknown_card
from radllama.models.loading import LoadedModel
from radllama.serve.batching import Batcher, Sampling, TransformersDecoder
from radllama.serve.openai_schema import ApiError
from radllama.serve.vllm_engine import VllmEngine

log = logging.getLogger("radllama.serve")
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
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_content: bool = False
    cors_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)  # names beyond loopback and --host (a proxy's)
    phi_guard: str = "redact"  # redact | flag | off: PHI-like spans in answers that the request did not hold
    clients: int = 1  # expected concurrent clients: what --backend auto sizes the server for (not a limit)


class ModelService:
    """The model's prompting (tokenizer, style, retrieval) plus its engine; handlers only tokenise and queue jobs."""

    def __init__(
        self,
        loaded: LoadedModel,
        settings: ServeSettings,
        engine: Any | None = None,
        card: dict | None = None,
        decoder: Any | None = None,
    ) -> None:
        """``engine`` decodes jobs (:class:`radllama.serve.vllm_engine.VllmEngine`); otherwise a
        :class:`Batcher` queues them for ``decoder`` (:class:`radllama.serve.llamacpp_decoder.LlamaCppDecoder`),
        by default the transformers model of ``loaded`` through ``model.generate``.
        ``card`` says what the model is (:func:`radllama.models.card.model_card`; unknown by default)."""
        self.loaded = loaded
        self.name = loaded.name
        self.card = {**(card or unknown_card(loaded.name)), "name": loaded.name}
        self.tokenizer = loaded.tokenizer
        self.settings = settings
        self.guard_counter = GuardCounter(settings.phi_guard)
        self.created = int(time.time())
        self._backend = "vllm"
        if engine is None:
            decoder = decoder or TransformersDecoder(loaded.model, loaded.tokenizer)
            engine = Batcher(decoder.decode, settings.max_batch, settings.batch_window_ms / 1000, settings.queue_size)
            self.context_window, self._backend = decoder.context_window, decoder.name
        else:
            self.context_window = engine.context_window
        self.engine = engine
        self._pending_prompts: list[tuple[list[str], asyncio.Future]] = []  # see impression_prompts
        self._rendering = False
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe to use from many threads at once

    @property
    def backend(self) -> str:
        return self._backend

    def healthy(self) -> bool:
        """False once the engine can no longer answer (a vLLM engine process that exited)."""
        return getattr(self.engine, "alive", True)

    def check_sampling(self, sampling: Sampling) -> None:
        """A per-request seed on vLLM's CPU engine would kill it (issue #11): refuse it here."""
        if (
            self.backend == "vllm"
            and not self.engine.seeds_supported
            and sampling.seed is not None
            and not sampling.greedy
        ):
            raise ApiError(400, "per-request seeds are not supported by the vLLM CPU engine: omit 'seed' "
                           "(or serve with --backend transformers)", "unsupported_value")  # fmt: skip

    def guard(self, texts: list[str], sources: list[str], sent: bool = False) -> list[str]:
        """The answers after the PHI guard (see :func:`radllama.deid.guard_output`); logs counts, never text."""
        guarded, found = self.guard_counter.apply(texts, sources, sent)
        if found:
            action = "counted (already streamed)" if sent else self.guard_counter.mode
            log.info("phi_guard %s: %s span(s) not in the request: %s", action, sum(found.values()),
                     ", ".join(f"{k}={v}" for k, v in sorted(found.items())))  # fmt: skip
        return guarded

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

    async def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Token ids of prompts, computed in a worker thread (off the event loop)."""

        def run() -> list[list[int]]:
            with self._tok_lock:
                return self.tokenizer(texts, add_special_tokens=False).input_ids

        return await asyncio.to_thread(run)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render a conversation with the model's prompt style (its system prompt first by default)."""
        if messages[-1]["role"] != "user":
            raise ApiError(400, "the last message must be from the user", "invalid_value")
        from radllama.errors import RadLlamaError

        style = self.loaded.style
        if messages[0]["role"] != "system" and style.system:
            try:
                return style.render_messages(self.tokenizer, [{"role": "system", "content": style.system}, *messages])
            except RadLlamaError:
                pass  # a template with no system role (Mistral-Instruct, Gemma): the conversation alone
        try:
            return style.render_messages(self.tokenizer, messages)
        except Exception as exc:  # the chat template refused, e.g. roles out of order
            raise ApiError(400, f"cannot render these messages: {exc}", "invalid_value") from exc

    async def impression_prompts(self, findings: list[str]) -> tuple[list[str], list]:
        """The trained prompts (style + retrieval index) for findings texts, and the retrieved examples.

        Rendering and retrieval run in a worker thread, off the event loop, so one large request
        never stalls the others. Requests that arrive while a rendering runs are rendered together
        next: a retrieval call has a fixed cost well above its per-query cost, and under load (many
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
        if not self._rendering:
            self._rendering = True
            self._render_task = loop.create_task(self._render_pending())  # referenced: not collected mid-run
        return await future

    async def _render_pending(self) -> None:
        while self._pending_prompts:
            pending, self._pending_prompts = self._pending_prompts, []
            try:
                prompts, shown = await asyncio.to_thread(
                    prompts_and_examples, self.loaded, [f for fs, _ in pending for f in fs]
                )
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                for _, future in pending:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._deliver(pending, prompts, shown)
        self._rendering = False

    def _deliver(self, pending: list[tuple[list[str], asyncio.Future]], prompts: list[str], shown: list) -> None:
        start = 0
        for findings, future in pending:
            if not future.done():  # a request cancelled meanwhile has no one waiting
                end = start + len(findings)
                future.set_result((prompts[start:end], shown[start:end]))
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
    model_dir: Path,
    adapter_dir: Path | None,
    settings: ServeSettings,
    backend: str = "auto",
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    allow_other_base: bool = False,
) -> ModelService:
    """Load the model for the chosen backend (vLLM imported only when it is the one)."""
    from radllama.inference import resolve_backend

    card = model_card(model_dir, adapter_dir)  # a broken model_card.json fails before any weights load
    chosen = resolve_backend(backend, model_dir=model_dir, clients=settings.clients)
    if chosen == "transformers":
        from radllama.models.loading import load_for_inference

        loaded = load_for_inference(model_dir, adapter_dir, dtype=dtype, allow_other_base=allow_other_base)
        return ModelService(loaded, settings, card=card)
    if chosen == "llamacpp":
        from radllama.inference import prepare_llamacpp
        from radllama.serve.llamacpp_decoder import LlamaCppDecoder

        loaded = prepare_llamacpp(model_dir, adapter_dir, allow_other_base)
        decoder = LlamaCppDecoder(loaded.backend.engine, loaded.tokenizer)
        return ModelService(loaded, settings, card=card, decoder=decoder)
    from radllama.inference import prepare_vllm
    from radllama.inference.vllm_backend import AsyncVllm

    loaded, engine = prepare_vllm(model_dir, adapter_dir, allow_other_base=allow_other_base)
    vllm = AsyncVllm(dtype=dtype, tensor_parallel_size=tensor_parallel_size, **engine)
    return ModelService(loaded, settings, VllmEngine(vllm, settings.queue_size, settings.max_batch), card)
