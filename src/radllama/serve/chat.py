"""``radllama chat``: a terminal conversation with a local model (no server needed).

Each turn is rendered with the model's PromptStyle (its system prompt first). When the
conversation no longer fits the context window, the oldest turns are dropped first.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from radllama.consistency import check
from radllama.consistency import warnings as consistency_warnings
from radllama.errors import RadLlamaError
from radllama.generate.impressions import complete_impressions, encode_prompts
from radllama.inference import Decoding
from radllama.models.loading import LoadedModel

HELP = "Type a message. Commands: /impression <findings>, /reset, /quit."


def _prompt_ids(loaded: LoadedModel, history: list[dict[str, str]]) -> tuple[str, int]:
    style = loaded.style
    messages = ([{"role": "system", "content": style.system}] if style.system else []) + history
    prompt = style.render_messages(loaded.tokenizer, messages)
    return prompt, len(loaded.tokenizer(prompt, add_special_tokens=False).input_ids)


def fit_history(
    loaded: LoadedModel, history: list[dict[str, str]], context: int, max_new_tokens: int
) -> tuple[list[dict[str, str]], str]:
    """Drop the oldest user/assistant pairs until the prompt plus the answer fits ``context``.

    Returns the kept history and its rendered prompt; raises when even the last message alone is too long.
    """
    kept = list(history)
    while True:
        prompt, n = _prompt_ids(loaded, kept)
        if n + max_new_tokens <= context:
            return kept, prompt
        if len(kept) <= 1:
            raise RadLlamaError(
                f"this message is {n} tokens; with room for the answer the model's window is {context} tokens"
            )
        kept = kept[2:]  # oldest user turn and its answer: roles must keep alternating


def run_chat(
    loaded: LoadedModel,
    read: Callable[[], str],
    console: Console,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
) -> None:
    """The read-reply loop; ``read`` raises EOFError at end of input."""
    context = loaded.backend.context_window
    decoding = Decoding(max_new_tokens=max_new_tokens, temperature=temperature)
    history: list[dict[str, str]] = []
    console.print(f"[bold]radllama chat[/] — {loaded.name}. {HELP}", highlight=False)
    while True:
        try:
            line = read().strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            history = []
            console.print("[dim]conversation cleared[/]")
            continue
        if line.startswith("/impression"):
            findings = line[len("/impression") :].strip()
            try:
                (done,) = complete_impressions(loaded, [findings], max_new_tokens=max_new_tokens)
            except RadLlamaError as exc:
                console.print(f"[red]{escape(str(exc))}[/]", highlight=False)
                continue
            console.print(Panel(done.text or "(empty)", title="Impression", border_style="green"), highlight=False)
            for warning in consistency_warnings(check(findings, done.text)):
                console.print(f"[yellow]warning:[/] {warning}", highlight=False)
            continue
        if line.startswith("/"):
            console.print(f"[yellow]unknown command[/] {line.split()[0]}. {HELP}", highlight=False)
            continue
        try:
            kept, prompt = fit_history(loaded, [*history, {"role": "user", "content": line}], context, max_new_tokens)
        except RadLlamaError as exc:
            console.print(f"[red]{escape(str(exc))}[/]", highlight=False)
            continue
        if len(kept) < len(history) + 1:
            console.print(f"[dim](oldest {len(history) + 1 - len(kept)} messages dropped to fit the window)[/]")
        (reply,) = loaded.backend.generate(encode_prompts(loaded, [prompt], max_new_tokens), decoding)
        history = [*kept, {"role": "assistant", "content": reply.text}]
        console.print(Panel(reply.text or "(empty)", title="RadLlama", border_style="cyan"), highlight=False)
    console.print("[dim]bye[/]")
