"""Turning split records into token ids: instruction examples (loss on the answer only)
and packed blocks of report text (for pretraining radllama-mini)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from radllama.prompts import PromptStyle
from radllama.retrieval import TfidfRetriever

IGNORE_INDEX = -100


@dataclass
class Example:
    """One tokenised training example."""

    input_ids: list[int]
    labels: list[int]


def encode_sft(
    tokenizer: Any,
    style: PromptStyle,
    findings: str,
    impression: str,
    examples: list[str] | None,
    max_seq_len: int,
) -> tuple[Example, bool]:
    """Tokenise one instruction example; returns it and whether the findings were cut.

    The prompt and the answer are tokenised separately, so the prompt ids are exactly the
    ones generation will see, and the labels mask every prompt token. When too long, the
    findings are shortened word by word from the end — the target is never cut.
    """
    answer_ids = tokenizer(style.answer_text(impression), add_special_tokens=False).input_ids
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    words = findings.split()
    cut = False
    while True:
        prompt = style.render(tokenizer, " ".join(words), examples)
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        overflow = len(prompt_ids) + len(answer_ids) - max_seq_len
        if overflow <= 0 or not words:
            break
        cut = True
        # Drop roughly as many words as there are excess tokens (at least one) and retry.
        words = words[: max(0, len(words) - max(1, overflow // 2))]
    if overflow > 0:  # even without findings the target does not fit: cut retrieved examples
        prompt_ids = prompt_ids[: max(1, max_seq_len - len(answer_ids))]
        cut = True
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return Example(prompt_ids + answer_ids, labels), cut


def retrieved_impressions(
    retriever: TfidfRetriever | None,
    findings: Sequence[str],
    k: int,
    exclude_ids: Sequence[str] | None = None,
) -> list[list[str] | None]:
    """The impressions of the ``k`` most similar training reports per query (None when k=0)."""
    if retriever is None or k <= 0:
        return [None] * len(findings)
    hits = retriever.query(findings, k=k, exclude_ids=exclude_ids)
    return [[h["impression"] for h in row] for row in hits]


def build_sft_examples(
    records: Sequence[dict],
    tokenizer: Any,
    style: PromptStyle,
    max_seq_len: int,
    retriever: TfidfRetriever | None = None,
) -> tuple[list[Example], int]:
    """Instruction examples for the impression task; returns (examples, number cut).

    Retrieval is leave-one-out: a training report never sees its own impression.
    """
    ids = [str(r["id"]) for r in records]
    shown = retrieved_impressions(retriever, [r["findings"] for r in records], style.retrieval_k, ids)
    out, n_cut = [], 0
    for rec, ex in zip(records, shown, strict=True):
        example, cut = encode_sft(tokenizer, style, rec["findings"], rec["impression"], ex, max_seq_len)
        out.append(example)
        n_cut += cut
    return out, n_cut


def report_text(record: dict) -> str:
    """A report as plain text, sections in reading order (pretraining corpus)."""
    parts = []
    for key, label in (("indication", "INDICATION"), ("comparison", "COMPARISON")):
        if record.get(key):
            parts.append(f"{label}: {record[key]}")
    parts.append(f"FINDINGS: {record['findings']}")
    parts.append(f"IMPRESSION: {record['impression']}")
    return "\n".join(parts)


def pack_blocks(tokenizer: Any, texts: Sequence[str], block_size: int) -> list[Example]:
    """Concatenate ``<s> text </s>`` documents and cut them into full blocks: no padding waste."""
    stream: list[int] = []
    for text in texts:
        stream += [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False).input_ids
        stream.append(tokenizer.eos_token_id)
    blocks = []
    for start in range(0, len(stream) - block_size + 1, block_size):
        ids = stream[start : start + block_size]
        blocks.append(Example(ids, list(ids)))
    return blocks
