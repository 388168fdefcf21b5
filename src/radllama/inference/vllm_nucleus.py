"""Nucleus (top-p) sampling for vLLM on CPU without sorting the whole vocabulary at every step.

vLLM's CPU sampler applies ``top_p`` by sorting each row's logits over the whole vocabulary at every
decode step (``vllm.v1.sample.ops.topk_topp_sampler.apply_top_k_top_p_pytorch``), which makes the
sort, not the model, the cost of sampled decoding (MBR's samples) for a model with a large vocabulary.
:class:`NucleusLogitsProcessor` keeps the same tokens (up to float rounding at the nucleus's edge):
it reads the ``TOP`` most probable tokens of a row, and when they already hold the nucleus (the usual
case for a trained model) it masks the rest without sorting; only the rows whose nucleus is wider
are sorted.

A request asks for it with ``top_p=1.0`` (so vLLM skips its own sort) and
``extra_args={NUCLEUS_KEY: p}`` (:func:`radllama.inference.vllm_backend.sampling_options` does this on CPU).
It runs where vLLM's own top-p runs: after the temperature, before the draw (an argmax-invariant
processor), so the distribution sampled from is the one ``top_p=p`` gives.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from radllama.inference.vllm_backend import NUCLEUS_KEY as KEY

TOP = 64  # tokens read before falling back to a sort; a trained model's nucleus is far smaller


def nucleus_logits(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """``logits`` (rows × vocabulary) with every token outside each row's nucleus set to -inf.

    vLLM's rule: a token stays when the probability of the tokens more probable than it is below
    ``top_p`` (so the most probable token always stays). ``top_p`` holds one value per row.
    """
    probs = logits.softmax(dim=-1)
    values, index = probs.topk(min(TOP, logits.shape[-1]), dim=-1)
    p = top_p.to(probs.dtype).unsqueeze(1)
    wide = values.sum(dim=-1) < p.squeeze(1)  # the nucleus reaches past the first TOP tokens
    out = torch.full_like(logits, float("-inf"))
    narrow = ~wide
    if narrow.any():
        out[narrow] = _masked(logits[narrow], index[narrow], _keep(values[narrow], p[narrow]))
    if wide.any():  # only these rows pay for a sort of the whole vocabulary
        values, index = probs[wide].sort(dim=-1, descending=True)
        out[wide] = _masked(logits[wide], index, _keep(values, p[wide]))
    return out


def _keep(descending: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    before = descending.cumsum(dim=-1) - descending  # the mass of the more probable tokens
    return before < p


def _masked(logits: torch.Tensor, index: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(1, index, torch.where(kept, logits.gather(1, index), float("-inf")))


def _wanted(params, _prompt: list[int] | None, _output: list[int]) -> float | None:  # noqa: ANN001 - vLLM's type
    p = (params.extra_args or {}).get(KEY)
    return None if p is None or params.temperature == 0 else float(p)


class NucleusLogitsProcessor(LogitsProcessor):
    """Per-request top-p from ``extra_args[KEY]`` (see the module docstring)."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:  # noqa: ANN001
        self.top_p: dict[int, float] = {}  # batch row -> its top-p

    @classmethod
    def validate_params(cls, sampling_params) -> None:  # noqa: ANN001 - vLLM's SamplingParams
        p = (sampling_params.extra_args or {}).get(KEY)
        if p is not None and not (isinstance(p, int | float) and 0 < p <= 1):
            raise ValueError(f"extra_args[{KEY!r}] must be a number in (0, 1], not {p!r}")

    def is_argmax_invariant(self) -> bool:
        return True  # the most probable token always stays

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.top_p, batch_update, _wanted)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        rows = [r for r, p in self.top_p.items() if p < 1.0]
        if not rows:
            return logits
        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        p = torch.tensor([self.top_p[r] for r in rows], device=logits.device)
        logits[index] = nucleus_logits(logits[index], p)
        return logits
