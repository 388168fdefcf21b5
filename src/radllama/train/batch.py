"""Micro-batches and their loss: what the training loop and validation both run."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F

from radllama.errors import RadLlamaError
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


def token_loss_sum(model: Any, batch: dict[str, torch.Tensor], base_mix: float = 0.0) -> torch.Tensor:
    """Summed next-token cross-entropy over target tokens (caller divides by the count).

    Logits are computed only from the batch's first target position on (``logits_to_keep``): with a
    vocabulary of tens of thousands, the output layer over prompt tokens that carry no loss is a large
    share of the step. The loss is the same as with every position's logits.

    ``base_mix`` (``optim.base_mix``, LoRA only): that share of each target token's loss is taken against
    the base model's own next-token distribution (adapters off, no gradient) instead of the reference token,
    so the tuned model learns the reports' answers while staying near what the base predicted: a soft target
    ``(1 - base_mix) * reference + base_mix * base``. It costs one more forward without the adapters.
    """
    labels = batch["labels"]
    width = labels.size(1)
    has_target = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    first = int(has_target[0]) if len(has_target) else width - 1
    keep = min(width, width - first + 1)  # the logit at position p predicts the label at p + 1
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "logits_to_keep": keep}
    logits = model(**inputs).logits
    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    shift_labels = labels[:, width - keep + 1 :].reshape(-1)
    reference = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    if not base_mix:
        return reference
    with torch.no_grad(), base_weights(model):
        base = model(**inputs).logits[:, :-1].reshape(-1, logits.size(-1)).float()
    target = shift_labels != IGNORE_INDEX
    soft = -(F.softmax(base[target], dim=-1) * F.log_softmax(shift_logits[target], dim=-1)).sum()
    return (1.0 - base_mix) * reference + base_mix * soft


def base_weights(model: Any) -> AbstractContextManager:
    """A context in which ``model`` (a PEFT model, or one wrapped for DDP) runs without its adapters."""
    inner = getattr(model, "module", model)
    if not hasattr(inner, "disable_adapter"):
        raise RadLlamaError("optim.base_mix needs a LoRA model (recipe lora_sft): a full fine-tune has no base to mix")
    return inner.disable_adapter()
