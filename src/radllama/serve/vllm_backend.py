"""``--backend vllm``: a thin adapter that lets vLLM decode our batches (LoRA via ``LoRARequest``).

vLLM batches continuously inside ``LLM.generate``; our engine thread simply hands it each batch.
Streamed answers arrive as one chunk per row (vLLM returns whole texts here). For many users, run
``vllm serve BASE --enable-lora --lora-modules radllama=ADAPTER_DIR`` instead (docs/serving.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.io import read_jsonl
from radllama.models.loading import RETRIEVAL_INDEX_FILE, TOKENIZER_FILES, LoadedModel, load_tokenizer
from radllama.prompts import PROMPT_STYLE_FILE, PromptStyle
from radllama.retrieval import TfidfRetriever
from radllama.serve.batching import Row, Sampling


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise RadLlamaError(
            "--backend vllm needs vLLM (Linux + CUDA): pip install 'radllama[vllm]'; "
            "or use the default --backend transformers"
        ) from exc
    return vllm


class VllmDecoder:
    """Decodes rows with ``vllm.LLM.generate`` (same interface as TransformersDecoder)."""

    def __init__(self, model_dir: Path, adapter_dir: Path | None) -> None:
        vllm = _import_vllm()
        self.vllm = vllm
        self.llm = vllm.LLM(model=str(model_dir), enable_lora=adapter_dir is not None)
        self.lora = None
        if adapter_dir is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("radllama", 1, str(adapter_dir))

    @property
    def context_window(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def decode(self, rows: list[Row], sampling: Sampling) -> None:
        params = [
            self.vllm.SamplingParams(
                max_tokens=r.max_new_tokens,
                temperature=0.0 if sampling.greedy else sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                stop=list(r.stop) or None,
            )
            for r in rows
        ]
        prompts = [{"prompt_token_ids": r.prompt_ids} for r in rows]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        for row, out in zip(rows, outputs, strict=True):
            done = out.outputs[0]
            row.token_ids = list(done.token_ids)
            row.text = done.text.strip()
            row.finish_reason = "length" if done.finish_reason == "length" else "stop"
            job = row.job
            if job is None:
                continue
            if job.stream:
                job.emit(("delta", row.index, row.text))
                job.emit(("finish", row.index, row.finish_reason))
            job.remaining -= 1
            if job.remaining == 0:
                job.emit(("done",))


def load_vllm(model_dir: Path, adapter_dir: Path | None) -> tuple[LoadedModel, VllmDecoder]:
    """Tokenizer, prompt style and retrieval index as load_for_inference finds them; vLLM for weights."""
    decoder = VllmDecoder(Path(model_dir), Path(adapter_dir) if adapter_dir else None)
    source = Path(adapter_dir) if adapter_dir else Path(model_dir)
    tok_dir = source if any((source / f).is_file() for f in TOKENIZER_FILES) else Path(model_dir)
    style_dir = source if (source / PROMPT_STYLE_FILE).is_file() else Path(model_dir)
    style = PromptStyle.load(style_dir)
    retriever = None
    if style.retrieval_k > 0:
        if not (source / RETRIEVAL_INDEX_FILE).is_file():
            raise RadLlamaError(f"{source}: prompt style uses retrieval but {RETRIEVAL_INDEX_FILE} is missing")
        retriever = TfidfRetriever(read_jsonl(source / RETRIEVAL_INDEX_FILE))
    return LoadedModel(None, load_tokenizer(tok_dir), style, retriever, source.name), decoder
