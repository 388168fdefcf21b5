"""The workstation backend: llama.cpp (``llama-cpp-python``) on a GGUF file, no GPU needed.

Every layer is offloaded to the GPU where llama.cpp was built with GPU support
(``llama_supports_gpu_offload()``), and :meth:`LlamaCppBackend.describe` says so (``"device": "gpu"``).

It is fed our token ids (rendered and tokenised by the caller, as for every backend), and its
token ids are decoded by our tokenizer: llama.cpp's own tokenizer never touches a prompt or an
answer here, so a tokenizer difference cannot change what the model sees. Decoding is llama.cpp's
sampler chain: greedy (argmax), or temperature + nucleus with no top-k and no min-p (as the
transformers backend samples), one seed per row (``seed + row``) so repeated prompts (MBR) differ.

One sequence at a time (llama-cpp-python's ``Llama`` decodes one); a prompt sharing its start with
the previous one reuses that prefix from the KV cache (the system prompt and instruction of every
impression prompt).

The GGUF comes from :func:`gguf_model`: the one in a ``radllama export --format gguf`` folder, or
for a base (+ adapter) an f16 export built once and cached by content, as vLLM's merged weights are.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.inference.base import Completion, Decoding, OnDone, cut_at_stop, room
from radllama.paths import cache_dir, cache_lock
from radllama.provenance import folder_digest

CACHE_QUANT = "f16"  # what a model folder is served as (equal greedy answers, BENCHMARKS.md)


def gguf_model(model_dir: str | Path, adapter_dir: str | Path | None = None, allow_other_base: bool = False) -> Path:
    """The GGUF file to load: an export folder's own, or a cached f16 export of base (+ adapter),
    built once under a file lock per key (a second process waits for it and reuses it)."""
    from radllama.inference.gguf_export import export_gguf, gguf_name, llama_cpp_version
    from radllama.progress import console

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise RadLlamaError(f"model folder {model_dir} does not exist")
    files = sorted(model_dir.glob("*.gguf"))
    if files:
        if adapter_dir is not None:
            raise RadLlamaError(f"{model_dir} is a GGUF export (its adapter merged in): drop --adapter")
        if len(files) > 1:
            raise RadLlamaError(f"{model_dir} holds {len(files)} GGUF files: keep one per folder")
        return files[0]
    parts = [folder_digest(model_dir), folder_digest(adapter_dir) if adapter_dir else "", llama_cpp_version()]
    key = hashlib.sha256("+".join(parts).encode()).hexdigest()[:20]
    out = cache_dir() / "gguf" / key
    if (out / gguf_name(CACHE_QUANT)).is_file():
        return out / gguf_name(CACHE_QUANT)
    with cache_lock(f"gguf-{key}"):
        if not (out / gguf_name(CACHE_QUANT)).is_file():  # else built while this process waited
            for stale in out.parent.glob(f".{key}.*.tmp"):  # a build that was killed (none runs: the lock)
                shutil.rmtree(stale, ignore_errors=True)
            console.print(f"exporting {adapter_dir or model_dir} to GGUF {CACHE_QUANT} (once; cached in {out})")
            export_gguf(model_dir, Path(adapter_dir) if adapter_dir else None, out, CACHE_QUANT, allow_other_base)
    return out / gguf_name(CACHE_QUANT)


def import_llama_cpp() -> Any:
    """llama_cpp, or one line naming the extra."""
    try:
        import llama_cpp
    except ImportError as exc:
        from radllama.inference.gguf_export import INSTALL_HINT

        raise RadLlamaError(f"--backend llamacpp needs llama-cpp-python: {INSTALL_HINT}") from exc
    return llama_cpp


def threads() -> int:
    """The cores this process may use (as torch's default thread count)."""
    import torch

    return max(1, torch.get_num_threads())


def gpu_layers(llama_cpp: Any) -> int:
    """Layers to offload (``n_gpu_layers``): all (-1) where this llama.cpp build can offload to a GPU, else none."""
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def sampler_options(decoding: Decoding) -> dict[str, Any]:
    """``Llama.generate`` options: greedy, or temperature + top-p alone; never a repetition penalty."""
    if decoding.greedy:
        return {"temp": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
    return {"temp": decoding.temperature, "top_k": 0, "top_p": decoding.top_p, "min_p": 0.0, "repeat_penalty": 1.0}


class LlamaCppEngine:
    """One ``llama_cpp.Llama`` on a GGUF file; :meth:`tokens` yields a prompt's new token ids."""

    def __init__(self, gguf: Path, eos: set[int]) -> None:
        llama_cpp = import_llama_cpp()
        self.path, self.eos, self.version = Path(gguf), eos, llama_cpp.__version__
        self.gpu_layers = gpu_layers(llama_cpp)
        # Where the layers run: the GPU when any is offloaded (-1: all), else the CPU.
        self.device = "gpu" if self.gpu_layers != 0 else "cpu"
        try:
            self.llm = llama_cpp.Llama(str(gguf), n_ctx=0, n_threads=threads(), n_threads_batch=threads(),
                                       n_gpu_layers=self.gpu_layers, verbose=False)  # fmt: skip
        except ValueError as exc:
            raise RadLlamaError(f"llama.cpp could not load {gguf}: {exc}") from exc
        self.context_window = int(self.llm.n_ctx())

    def tokens(self, prompt: Sequence[int], decoding: Decoding, seed: int | None, limit: int) -> Any:
        """New token ids, EOS included, at most ``limit`` (the caller may stop early)."""
        if limit <= 0:
            return
        self.llm.set_seed(seed if seed is not None else 0)
        for count, token in enumerate(self.llm.generate(list(prompt), **sampler_options(decoding)), start=1):
            yield int(token)
            if token in self.eos or count >= limit:
                return

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()


class LlamaCppBackend:
    """Prompts one after another through llama.cpp; answers decoded by our tokenizer."""

    name = "llamacpp"

    def __init__(self, gguf: Path, tokenizer: Any, eos: set[int]) -> None:
        self.engine = LlamaCppEngine(gguf, eos)
        self.tokenizer, self.eos = tokenizer, eos
        self.context_window = self.engine.context_window

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "version": self.engine.version, "gguf": self.engine.path.name,
                "device": self.engine.device, "gpu_layers": "all" if self.engine.gpu_layers < 0 else 0}  # fmt: skip

    def close(self) -> None:
        self.engine.close()

    def generate(
        self, prompts: Sequence[Sequence[int]], decoding: Decoding, on_done: OnDone | None = None, *,
        every: int = 16,
    ) -> list[Completion]:  # fmt: skip
        results: list[Completion] = []
        for start in range(0, len(prompts), every):  # results are handed on in groups, as they are made
            done = [self._one(i, prompts[i], decoding) for i in range(start, min(start + every, len(prompts)))]
            results += done
            if on_done is not None:
                on_done(list(range(start, start + len(done))), done)
        return results

    def _one(self, row: int, prompt: Sequence[int], decoding: Decoding) -> Completion:
        seed = None if decoding.greedy else (decoding.seed or 0) + row
        new = list(self.engine.tokens(prompt, decoding, seed, room(len(prompt), decoding, self.context_window)))
        end = next((k for k, t in enumerate(new) if t in self.eos), None)
        ids = new if end is None else new[:end]
        text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), decoding.stop)
        reason = "stop" if end is not None or stopped else "length"
        return Completion(text.strip(), len(prompt), len(ids) + int(end is not None), reason)
