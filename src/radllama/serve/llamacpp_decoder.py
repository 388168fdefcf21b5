"""The server's llama.cpp decoder: the rows of a batch one after another through one llama.cpp
model (:class:`radllama.inference.llamacpp_backend.LlamaCppEngine`), each token streamed as it comes.

It plugs into :class:`radllama.serve.batching.Batcher` like the transformers decoder, so queueing,
limits, stop strings, streaming and cancellation are the same code; llama-cpp-python decodes one
sequence at a time, so a batch here is a queue, not a matrix.
"""

from __future__ import annotations

import random
from typing import Any

from radllama.inference.base import Decoding
from radllama.inference.llamacpp_backend import LlamaCppEngine
from radllama.serve.batching import Row, Sampling, finish_row, push_token


class LlamaCppDecoder:
    """Decodes rows with llama.cpp; the same greedy and sampling options as ``--backend llamacpp``."""

    name = "llamacpp"

    def __init__(self, engine: LlamaCppEngine, tokenizer: Any) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.context_window = engine.context_window

    def decode(self, rows: list[Row], sampling: Sampling) -> None:
        decoding = Decoding(temperature=0.0 if sampling.greedy else sampling.temperature, top_p=sampling.top_p)
        # A seeded request reproduces (seed + row); an unseeded one draws its own.
        base = sampling.seed if sampling.seed is not None else random.getrandbits(31)
        for row in rows:
            reason = None
            for token in self.engine.tokens(row.prompt_ids, decoding, base + row.index, row.max_new_tokens + 1):
                if row.job is not None and row.job.cancelled.is_set():
                    reason = "cancelled"
                else:
                    reason = push_token(row, token, self.tokenizer, self.engine.eos)
                if reason is not None:
                    break
            finish_row(row, reason or "length", self.tokenizer)
