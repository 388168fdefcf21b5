"""What every inference backend shares: decoding options, a completion, the backend protocol.

A backend turns prompt token ids into completions. Prompts are rendered and tokenised by the
caller (``radllama.generate.impressions``, the server), so every backend sees exactly the same
input and only the decoding differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MIN_TEMPERATURE = 1e-4  # below it, sampling is greedy: dividing logits by it overflows to inf/NaN


@dataclass(frozen=True)
class Decoding:
    """How tokens are chosen (greedy unless temperature >= MIN_TEMPERATURE)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < MIN_TEMPERATURE

    def describe(self) -> dict[str, Any]:
        """The settings that change an answer (for provenance records)."""
        if self.greedy:
            return {"mode": "greedy", "max_new_tokens": self.max_new_tokens, "stop": list(self.stop)}
        return {"mode": "sample", "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "stop": list(self.stop), "seed": self.seed}  # fmt: skip


@dataclass
class Completion:
    """One generated continuation."""

    text: str
    prompt_tokens: int
    completion_tokens: int  # EOS counts as one token where it was generated
    finish_reason: str  # "stop" (EOS or a stop string) | "length" | "unfit" (not decoded, see error)
    source: str = "greedy"  # which candidate an MBR answer is: greedy | sample | retrieved
    error: str | None = None  # why a case was not decoded (finish reason "unfit"); None when it was


OnDone = Callable[[list[int], list[Completion]], None]


class Backend(Protocol):
    """An engine that completes token-id prompts."""

    name: str  # "transformers" | "vllm"
    context_window: int  # prompt + completion tokens the model attends over

    def generate(
        self, prompts: Sequence[Sequence[int]], decoding: Decoding, on_done: OnDone | None = None
    ) -> list[Completion]:
        """Completions in prompt order; ``on_done(indices, completions)`` as groups finish (for appending to files)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend, dtype, device and version: what a provenance record needs to know."""
        ...

    def close(self) -> None:
        """Free the engine (processes, memory)."""
        ...


def room(prompt_len: int, decoding: Decoding, window: int) -> int:
    """New tokens a prompt may have: its limit, within the context window."""
    return max(0, min(decoding.max_new_tokens, window - prompt_len))


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
