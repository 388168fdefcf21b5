"""Prompt rendering: the Llama-2 chat format through the mini tokenizer's template, and the
Alpaca-style fallback for a tokenizer without one."""

from __future__ import annotations

import pytest

from radllama.models.mini import train_tokenizer
from radllama.prompts import PromptStyle
from radllama.train.tiny import INVENTED_TEXT


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(INVENTED_TEXT * 10, vocab_size=300)


def test_llama2_chat_format_exact(tokenizer) -> None:
    style = PromptStyle(instruction="Derive it", system="Be brief.")
    text = style.render(tokenizer, "Lungs clear.")
    user = "Derive it.\n\nFindings: Lungs clear."
    assert text == f"<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n{user} [/INST]"


def test_llama2_chat_format_without_system(tokenizer) -> None:
    style = PromptStyle(instruction="Derive it", system=None)
    assert style.render(tokenizer, "Lungs clear.") == "<s>[INST] Derive it.\n\nFindings: Lungs clear. [/INST]"


def test_retrieved_impressions_listed_before_findings(tokenizer) -> None:
    style = PromptStyle(instruction="Derive it", system=None, retrieval_k=2)
    text = style.render(tokenizer, "Lungs clear.", ["Normal chest.", "No acute process."])
    assert "Impressions of similar earlier reports:\n- Normal chest.\n- No acute process.\n\nFindings:" in text


def test_alpaca_fallback_without_template() -> None:
    tok = train_tokenizer(INVENTED_TEXT * 10, vocab_size=300)
    tok.chat_template = None
    style = PromptStyle(instruction="Derive it", system="Be brief.")
    text = style.render(tok, "Lungs clear.")
    assert text == "<s>### System:\nBe brief.\n\n### Input:\nDerive it.\n\nFindings: Lungs clear.\n\n### Response:\n"


def test_fallback_when_template_disabled(tokenizer) -> None:
    style = PromptStyle(instruction="Derive it", system=None, use_chat_template=False)
    assert style.render(tokenizer, "x").endswith("### Response:\n")
    assert "[INST]" not in style.render(tokenizer, "x")


def test_prompt_style_round_trip(tmp_path) -> None:
    style = PromptStyle(instruction="Derive it", system=None, retrieval_k=3)
    style.save(tmp_path)
    assert PromptStyle.load(tmp_path) == style
