"""Shared helpers for the serve tests: a tiny random-weight Llama with a trained tokenizer, a
retrieval-augmented prompt style, and the real app under a real uvicorn on a free loopback port,
on either inference backend (``BACKENDS``): the transformers engine in-process, or vLLM's engine in
its own process (one per test session, shared by every vLLM-backed app)."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from live_server import live_uvicorn

from radllama.inference.vllm_backend import AsyncVllm
from radllama.io import write_jsonl
from radllama.models.loading import RETRIEVAL_INDEX_FILE, LoadedModel, load_for_inference, load_prompting
from radllama.models.mini import (
    CHAT_MARKERS,
    SPECIAL_TOKENS,
    MiniModelArgs,
    build_model,
    save_pretrained,
    train_tokenizer,
)
from radllama.prompts import PromptStyle
from radllama.serve.app import create_app
from radllama.serve.service import ModelService, ServeSettings
from radllama.serve.vllm_engine import VllmEngine

BACKENDS = ("transformers", "vllm")

SENTENCES = [
    "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Small left pleural effusion with basilar atelectasis.",
    "No acute cardiopulmonary abnormality. Stable mediastinal contours.",
    "Right upper lobe opacity concerning for pneumonia. No pneumothorax.",
    "Degenerative changes of the thoracic spine. Calcified granuloma in the left lung.",
    "Endotracheal tube terminates 4 cm above the carina. Bilateral interstitial edema.",
    "Derive the impression from findings in the radiology report. Impressions of similar earlier reports.",
    "You are a radiology assistant. Answer with a concise impression, as a radiologist writes it.",
]
# 32 different findings: every concurrent client asks something else.
FINDINGS = [f"{SENTENCES[i % 6]} {SENTENCES[(i * 5 + 1) % 6].split('.')[0]}. Finding number {i}." for i in range(32)]


VOCAB = 400


@functools.cache
def tiny_model_dir() -> Path:
    """A 2-layer, 64-wide Llama (vocab 400, head size 32: one vLLM supports) saved with
    prompt_style.yaml and a retrieval index."""
    folder = Path(tempfile.mkdtemp(prefix="radllama-serve-tiny-"))
    tok = train_tokenizer(SENTENCES * 4, vocab_size=VOCAB)
    args = MiniModelArgs(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
    )  # fmt: skip
    model = build_model(args, tok, seed=1)
    with torch.no_grad():
        # Untied random output head, and no special tokens out of it: random weights then give
        # visible text that depends on the prompt (a tied head just repeats the last token).
        # Single bytes are left out too, so every answer is readable text made of merged tokens.
        model.lm_head.weight[: len(SPECIAL_TOKENS) + len(CHAT_MARKERS) + 256] = 0.0
    save_pretrained(model, tok, folder)
    PromptStyle(retrieval_k=2).save(folder)
    write_jsonl(
        folder / RETRIEVAL_INDEX_FILE,
        [{"id": str(i), "findings": s, "impression": s.split(".")[0] + "."} for i, s in enumerate(SENTENCES[:6])],
    )
    return folder


@functools.cache
def tiny_loaded() -> LoadedModel:
    return load_for_inference(tiny_model_dir(), device="cpu")


@functools.cache
def tiny_vllm_engine() -> AsyncVllm:
    """vLLM's async engine for the tiny model, fp32 (greedy answers equal the transformers backend's);
    stopped at the end of the test session (conftest.py)."""
    return AsyncVllm(tiny_model_dir(), tiny_model_dir(), dtype="fp32")


def tiny_service(settings: ServeSettings, backend: str = "transformers") -> ModelService:
    """The tiny model's service on ``backend``."""
    if backend == "vllm":
        engine = VllmEngine(tiny_vllm_engine(), settings.queue_size, settings.max_batch, owns_engine=False)
        return ModelService(load_prompting(tiny_model_dir()), settings, engine)
    return ModelService(tiny_loaded(), settings)


@contextmanager
def live_server(settings: ServeSettings | None = None, backend: str = "transformers") -> Iterator[str]:
    """The real app under a real uvicorn on a free loopback port; yields its base URL."""
    with live_uvicorn(create_app(tiny_service(settings or ServeSettings(), backend))) as url:
        yield url
