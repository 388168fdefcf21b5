"""The reference backend: batched ``model.generate`` on any Hugging Face causal LM, any device.

Prompts are sorted by length and decoded in batches (left padding, KV cache, each row stops at
EOS); results come back in input order. Nothing here reaches into transformers' internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from radllama.inference.base import Completion, Decoding, OnDone, cut_at_stop, room
from radllama.models.loading import stop_token_ids


def generate_kwargs(tokenizer: Any, decoding: Decoding) -> dict[str, Any]:
    """``model.generate`` options shared by every caller: greedy unless sampling, no top-k, the
    tokenizer's pad id (callers add ``eos_token_id=stop_token_ids(...)``)."""
    sample = not decoding.greedy
    return {
        "do_sample": sample,
        "temperature": decoding.temperature if sample else None,
        "top_p": decoding.top_p if sample else None,
        "top_k": None,
        "pad_token_id": tokenizer.pad_token_id,
        "use_cache": True,
    }


def context_window(model: Any, tokenizer: Any) -> int:
    """Tokens the model attends over: its position embeddings, else the tokenizer's limit."""
    return int(getattr(model.config, "max_position_embeddings", 0) or tokenizer.model_max_length)


class TransformersBackend:
    """Length-sorted batches through ``model.generate``."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 32) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.context_window = context_window(model, tokenizer)
        self.eos = set(stop_token_ids(model, tokenizer))

    def describe(self) -> dict[str, Any]:
        import transformers

        dtype = str(self.model.dtype).removeprefix("torch.")
        return {
            "backend": self.name,
            "version": transformers.__version__,
            "dtype": dtype,
            "device": str(self.model.device),
        }

    def close(self) -> None:
        pass

    def generate(
        self, prompts: Sequence[Sequence[int]], decoding: Decoding, on_done: OnDone | None = None
    ) -> list[Completion]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            done = self._batch([prompts[i] for i in idx], decoding)
            for i, c in zip(idx, done, strict=True):
                results[i] = c
            if on_done is not None:
                on_done(idx, done)
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def _batch(self, rows: Sequence[Sequence[int]], decoding: Decoding) -> list[Completion]:
        tok, width = self.tokenizer, max(len(r) for r in rows)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + list(r) for r in rows], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.model.device)
        out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=decoding.max_new_tokens,
                                  eos_token_id=sorted(self.eos), **generate_kwargs(tok, decoding))  # fmt: skip
        return [self._completion(len(r), new, decoding) for r, new in zip(rows, out[:, width:].tolist(), strict=True)]

    def _completion(self, prompt_len: int, new: list[int], decoding: Decoding) -> Completion:
        new = new[: room(prompt_len, decoding, self.context_window)]  # as vLLM: nothing past the window
        end = next((k for k, t in enumerate(new) if t in self.eos), None)
        ids = new if end is None else new[:end]
        text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), decoding.stop)
        reason = "stop" if end is not None or stopped else "length"
        return Completion(text.strip(), prompt_len, len(ids) + int(end is not None), reason)
