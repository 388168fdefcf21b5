"""Small list views of radllama's streaming builders, for tests on a handful of records.

Training only streams (``iter_sft_examples`` / ``iter_task_examples``); these gather a stream
with the totals the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from radllama.prompts import PromptStyle
from radllama.retrieval import TfidfRetriever
from radllama.train.examples import Example, iter_sft_examples, iter_task_examples


def sft_list(
    records: Sequence[dict],
    tokenizer: Any,
    style: PromptStyle,
    max_seq_len: int,
    retriever: TfidfRetriever | None = None,
) -> tuple[list[Example], int]:
    """``iter_sft_examples`` as a list; returns (examples, number cut)."""
    made = list(iter_sft_examples(records, tokenizer, style, max_seq_len, retriever))
    return [example for example, _ in made], sum(cut for _, cut in made)


def task_list(
    records: Sequence[dict],
    tokenizer: Any,
    style: PromptStyle,
    max_seq_len: int,
    tasks: dict[str, float],
    seed: int = 0,
    retriever: TfidfRetriever | None = None,
) -> tuple[list[Example], int, dict[str, int]]:
    """``iter_task_examples`` as a list; returns (examples, number cut, count per task)."""
    made = list(iter_task_examples(records, tokenizer, style, max_seq_len, tasks, seed, retriever))
    return [e for _, e, _ in made], sum(cut for _, _, cut in made), {n: sum(t == n for t, _, _ in made) for n in tasks}
