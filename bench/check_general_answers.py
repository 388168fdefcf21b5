"""Issue #29: does a tuned chat model still answer a general question? Four questions, greedy, chat template,
no system prompt, for the base and each adapter; an answer counts as sensible when it holds a word that any
sensible answer holds (written with the questions, before any model was asked).

    python bench/check_general_answers.py --model runs/smollm2 --system untuned= \
        --system v3=runs/sweep/v3/best [--no-write]

The model card offers chat only for models taught more than the impression (radllama.models.card); this is the
check on what the tuned model does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

TITLE = "Issue #29: general questions after tuning (check_general_answers.py)"
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("paris",)),
    ("In one sentence, what is a pneumothorax?", ("air", "collapse")),
    ("Name three symptoms of the common cold.", ("cough", "sneez", "sore throat", "runny", "congest", "fever")),
    ("What is 12 plus 7?", ("19", "nineteen")),
]


def answers(model: str, adapter: str | None, max_new_tokens: int = 48) -> list[str]:
    """Greedy answers to :data:`QUESTIONS`, rendered by the model's chat template with no system prompt."""
    from radllama.generate.impressions import encode_prompts
    from radllama.inference import Decoding, load_model
    from radllama.prompts import PromptStyle

    loaded = load_model(model, adapter or None, backend="transformers", device="cpu")
    style = PromptStyle(system=None)
    prompts = [style.render_messages(loaded.tokenizer, [{"role": "user", "content": q}]) for q, _ in QUESTIONS]
    done = loaded.backend.generate(encode_prompts(loaded, prompts, max_new_tokens), Decoding(max_new_tokens))
    loaded.backend.close()
    return [c.text.strip() for c in done]


def sensible(answer: str, words: tuple[str, ...]) -> bool:
    return any(w in answer.lower() for w in words)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/smollm2")
    ap.add_argument("--system", action="append", default=[], help="NAME=ADAPTER (empty: the base)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    lines = ["| system | question | answer (first 90 characters) | sensible |", "|---|---|---|---|"]
    totals = []
    for spec in args.system:
        name, _, adapter = spec.partition("=")
        got = answers(args.model, adapter)
        hits = 0
        for (question, words), answer in zip(QUESTIONS, got, strict=True):
            ok = sensible(answer, words)
            hits += ok
            shown = answer.replace("\n", " ").replace("|", "/")[:90]
            lines.append(f"| {name} | {question} | {shown} | {'yes' if ok else 'no'} |")
        totals.append(f"{name} {hits}/{len(QUESTIONS)}")
    note = (
        f"Base `{args.model}`; greedy, 48 new tokens, the tokenizer's chat template, no system prompt. Sensible: "
        f"{'; '.join(totals)}."
    )
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
