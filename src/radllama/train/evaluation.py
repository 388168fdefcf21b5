"""Validation during training: loss on ``data.validation``, greedy ROUGE-1 on a fixed sample,
the best checkpoint (``output_dir/best/``) and early stopping with patience.

Each recipe builds a :class:`Validation` (its examples and how its model answers); the loop
decides when to measure (:func:`due`), keeps the record (:class:`BestTracker`, saved in every
checkpoint so a resumed run decides exactly as an uninterrupted one) and writes ``best/``.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radllama.io import atomic_write_json
from radllama.rouge import rouge_many
from radllama.train.batch import collate, token_loss_sum
from radllama.train.config import EVAL_METRICS, EvalArgs
from radllama.train.example_table import ExampleTable
from radllama.train.examples import IGNORE_INDEX, report_text

BEST_DIR = "best"
BEST_FILE = "best.json"


@dataclass
class Validation:
    """What the loop measures: teacher-forced ``examples`` (loss per target token) and a ROUGE
    sample (``inputs`` → ``references``) answered by ``answer(model, inputs)``."""

    examples: ExampleTable
    inputs: list[str]
    references: list[str]
    answer: Callable[[Any, list[str]], list[str]]
    settings: EvalArgs


def due(done: int, steps: int, per_epoch: int, settings: EvalArgs) -> tuple[bool, bool]:
    """(validation loss, ROUGE-1) due after optimiser step ``done``; the last step has both.
    A ROUGE evaluation always comes with a loss, so every evaluation row has ``val_loss``."""
    last = done == steps
    rouge = settings.rouge_samples > 0 and (last or done % (settings.rouge_every_steps or per_epoch) == 0)
    loss = rouge or last or done % (settings.every_steps or per_epoch) == 0
    return loss, rouge


@torch.no_grad()
def loss_sum(
    model: Any, examples: ExampleTable, micro_batch_size: int, pad_id: int, device: Any, rank: int, world: int
) -> tuple[float, int]:
    """Summed target-token loss and the number of target tokens over this rank's share.

    Every rank runs the same number of forward passes (a short share repeats a batch and drops
    its loss): under FSDP each forward is a collective.
    """
    order = np.argsort(examples.lengths, kind="stable").tolist()  # little padding
    batches = [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]
    per_rank = math.ceil(len(batches) / world)
    mine = batches[rank * per_rank : (rank + 1) * per_rank]
    total, count = 0.0, 0
    for j in range(per_rank):
        chunk = mine[j] if j < len(mine) else batches[0]
        batch = {k: v.to(device) for k, v in collate(examples.rows(chunk), pad_id).items()}
        value = token_loss_sum(model, batch).item()
        if j < len(mine):
            total += value
            count += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    return total, count


def rouge1_sum(validation: Validation, model: Any, rank: int, world: int) -> tuple[float, int]:
    """Summed ROUGE-1 F1 of this rank's share of the sample (answers are greedy, so any split of
    the sample gives the same mean)."""
    inputs, refs = validation.inputs[rank::world], validation.references[rank::world]
    if not inputs:
        return 0.0, 0
    scores = rouge_many(validation.answer(model, inputs), refs)["rouge1"]
    return float(sum(scores)), len(scores)


def impression_answerer(tokenizer: Any, style: Any, retriever: Any, max_new_tokens: int) -> Callable:
    """LoRA recipe: greedy impressions with the trained prompt, exactly as ``radllama generate``
    renders it (same style, retrieval from the training index)."""

    def answer(model: Any, findings: list[str]) -> list[str]:
        from radllama.generate.impressions import complete_impressions
        from radllama.inference.transformers_backend import TransformersBackend
        from radllama.models.loading import LoadedModel

        backend = TransformersBackend(model, tokenizer)
        loaded = LoadedModel(model, tokenizer, style, retriever, "training", backend)
        return [c.text for c in complete_impressions(loaded, findings, max_new_tokens)]

    return answer


def continuation_answerer(tokenizer: Any, max_new_tokens: int) -> Callable:
    """Pretraining: the base model continues ``FINDINGS: …\\nIMPRESSION:`` as its corpus is laid
    out (radllama.train.examples.report_text), up to the end of that line."""

    def answer(model: Any, findings: list[str]) -> list[str]:
        from radllama.inference import Decoding
        from radllama.inference.transformers_backend import TransformersBackend

        texts = [report_text({"findings": f}, ["findings"]) + "\nIMPRESSION:" for f in findings]
        ids = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False).input_ids] for t in texts]
        done = TransformersBackend(model, tokenizer).generate(ids, Decoding(max_new_tokens, stop=("\n",)))
        return [c.text for c in done]

    return answer


@dataclass
class BestTracker:
    """The best evaluation so far by ``metric`` and how many evaluations since it improved."""

    metric: str = "val_loss"
    patience: int = 0
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    best_row: dict | None = None
    since_best: int = 0
    last_row: dict | None = None
    evaluations: int = 0

    @classmethod
    def from_settings(cls, settings: EvalArgs) -> BestTracker:
        return cls(settings.metric, settings.patience, settings.min_delta)

    def update(self, row: dict) -> bool:
        """Record an evaluation row; True when it is a new best. A row without the metric
        (loss-only rows when the metric is ROUGE-1) neither improves nor counts against patience."""
        self.last_row, self.evaluations = row, self.evaluations + 1
        value = row.get(self.metric)
        if value is None:
            return False
        if math.isnan(value):
            improved = False
        elif self.best is None:
            improved = True
        elif EVAL_METRICS[self.metric] == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_step, self.best_row, self.since_best = value, row["step"], row, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def state(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> BestTracker:
        return cls(**state)


def recover_best(output_dir: Path) -> None:
    """Finish a ``best/`` swap cut off between its two renames: with ``best/`` gone, ``best.old/``
    is the only whole copy left, so it goes back (the rerun's evaluations decide any newer best)."""
    out = Path(output_dir)
    final, old = out / BEST_DIR, out / f"{BEST_DIR}.old"
    if not final.exists() and (old / BEST_FILE).is_file():
        old.rename(final)


def write_best(output_dir: Path, save_weights: Callable, state_dict: dict | None, record: dict) -> Path:
    """Main process: the weights (as the final model is saved) and ``best.json`` into ``best.tmp/``,
    then swapped in for ``best/``: the name never holds half a folder, and a kill at any point
    leaves a whole earlier ``best/`` or ``best.old/`` that :func:`recover_best` restores."""
    from radllama.train.checkpoint import fsync_tree

    out = Path(output_dir)
    tmp, final, old = out / f"{BEST_DIR}.tmp", out / BEST_DIR, out / f"{BEST_DIR}.old"
    recover_best(out)
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp, state_dict)
    atomic_write_json(tmp / BEST_FILE, record)
    fsync_tree(tmp)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
