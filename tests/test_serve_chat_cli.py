"""``radllama chat`` as a user runs it: a subprocess fed on stdin; and history trimming to the window."""

from __future__ import annotations

import os
import subprocess
import sys

from test_serve_support import FINDINGS, tiny_loaded, tiny_model_dir

from radllama.generate.impressions import generate_impressions
from radllama.serve.chat import fit_history


def test_chat_session_over_stdin() -> None:
    (expected,) = generate_impressions(str(tiny_model_dir()), None, [FINDINGS[4]], max_new_tokens=10)
    script = (f"hello\n/impression {FINDINGS[4]}\n/nonsense\nand again\n/reset\n"
              "/impression Large left pneumothorax.\n/quit\nnever read\n")  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "radllama.cli", "chat", "--model", str(tiny_model_dir()), "--max-tokens", "10"],
        input=script, capture_output=True, text=True, timeout=180,
        env={**os.environ, "COLUMNS": "250", "TERM": "dumb"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("RadLlama") == 2  # two chat replies
    assert "Impression" in out and expected in out  # the trained prompt, as generate_impressions
    assert "unknown command" in out and "conversation cleared" in out and "bye" in out
    # The random tiny model cannot write "pneumothorax": the consistency check says it is omitted.
    assert "warning: the findings state Pneumothorax, the impression does not" in " ".join(out.split())
    assert "Traceback" not in r.stderr


def test_history_is_trimmed_from_the_oldest_turns() -> None:
    loaded = tiny_loaded()
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"Question {i}: {FINDINGS[i]}"}, {"role": "assistant", "content": "ok"}]
    turns.append({"role": "user", "content": "last question"})
    kept, prompt = fit_history(loaded, turns, context=512, max_new_tokens=64)
    assert kept[-1]["content"] == "last question" and kept[0]["role"] == "user"
    assert 1 < len(kept) < len(turns) and kept == turns[len(turns) - len(kept) :]
    assert len(loaded.tokenizer(prompt, add_special_tokens=False).input_ids) + 64 <= 512
    assert "Question 0" not in prompt and "last question" in prompt
