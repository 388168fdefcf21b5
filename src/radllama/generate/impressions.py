"""The paper's task as functions: findings -> impressions with a trained model's own prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.generate.engine import Completion, GenerationSettings, generate_many
from radllama.io import JsonlAppender, read_jsonl
from radllama.models.loading import LoadedModel, load_for_inference
from radllama.progress import progress_bar
from radllama.train.examples import retrieved_impressions

MAX_FINDINGS_CHARS = 20_000


def clean_findings(text: str) -> str:
    """Collapse whitespace; refuse empty or absurdly long findings with a clear message."""
    if not isinstance(text, str):
        raise RadLlamaError("findings must be text")
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise RadLlamaError("findings are empty: give the FINDINGS section of a report")
    if len(text) > MAX_FINDINGS_CHARS:
        raise RadLlamaError(f"findings are {len(text):,} characters; at most {MAX_FINDINGS_CHARS:,} are accepted")
    return text


def impression_prompts(loaded: LoadedModel, findings: Sequence[str]) -> list[str]:
    """Render the prompts exactly as in training (same style, same retrieval index)."""
    shown = retrieved_impressions(loaded.retriever, findings, loaded.style.retrieval_k)
    return [loaded.style.render(loaded.tokenizer, f, ex) for f, ex in zip(findings, shown, strict=True)]


def complete_impressions(
    loaded: LoadedModel,
    findings: Sequence[str],
    batch_size: int = 32,
    max_new_tokens: int = 128,
    on_batch=None,
) -> list[Completion]:
    """Completions (text + token counts) for a list of findings."""
    cleaned = [clean_findings(f) for f in findings]
    prompts = impression_prompts(loaded, cleaned)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    return generate_many(loaded.model, loaded.tokenizer, prompts, settings, batch_size, on_batch)


def generate_impressions(
    model_dir: str,
    adapter_dir: str | None,
    findings: list[str],
    batch_size: int = 32,
    max_new_tokens: int = 128,
) -> list[str]:
    """Load a model (+ adapter) and return one impression per findings text."""
    loaded = load_for_inference(model_dir, adapter_dir)
    return [c.text for c in complete_impressions(loaded, findings, batch_size, max_new_tokens)]


def generate_file(
    loaded: LoadedModel,
    input_path: Path,
    output_path: Path,
    system: str,
    batch_size: int = 32,
    max_new_tokens: int = 128,
) -> int:
    """Predictions JSONL for a split file, appended and flushed per batch; a rerun resumes.

    Returns the number of new predictions written.
    """
    records = read_jsonl(Path(input_path))
    with JsonlAppender(Path(output_path)) as out:
        todo = [r for r in records if str(r["id"]) not in out.done]
        if not todo:
            return 0
        with progress_bar() as bar:
            task = bar.add_task(f"generate {system}", total=len(todo))

            def write(indices: list[int], done: list[Completion]) -> None:
                for i, c in zip(indices, done, strict=True):
                    r = todo[i]
                    out.write(
                        {
                            "id": r["id"],
                            "system": system,
                            "findings": r["findings"],
                            "reference": r.get("impression", ""),
                            "prediction": c.text,
                            "seen_findings": r.get("seen_findings"),
                            "status": "ok",
                        }
                    )
                bar.advance(task, len(indices))

            complete_impressions(loaded, [r["findings"] for r in todo], batch_size, max_new_tokens, write)
    return len(todo)
