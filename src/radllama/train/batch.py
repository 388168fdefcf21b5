"""Micro-batches and their loss: what the training loop and validation both run."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from radllama.train.examples import IGNORE_INDEX, Example


def collate(batch: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch; padding never carries loss."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def masked(example: Example) -> Example:
    """``example`` with every label ignored: a forward and backward that add nothing."""
    return Example(example.input_ids, [IGNORE_INDEX] * len(example.labels))


def token_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over target tokens (caller divides by the count).

    Logits are computed only from the batch's first target position on (``logits_to_keep``): with a
    vocabulary of tens of thousands, the output layer over prompt tokens that carry no loss is a large
    share of the step. The loss is the same as with every position's logits.
    """
    labels = batch["labels"]
    width = labels.size(1)
    has_target = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    first = int(has_target[0]) if len(has_target) else width - 1
    keep = min(width, width - first + 1)  # the logit at position p predicts the label at p + 1
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep)
    logits = out.logits
    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    shift_labels = labels[:, width - keep + 1 :].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
