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


# --- The real 32k Llama-family SentencePiece tokenizer (tests/conftest.py) ---------------------


@pytest.fixture(scope="module")
def real_tokenizer(llama2_real_tokenizer):
    from radllama.models.loading import load_tokenizer

    return load_tokenizer(llama2_real_tokenizer)


def test_real_sentencepiece_tokenizer_loads(real_tokenizer) -> None:
    assert len(real_tokenizer) == 32000
    assert (real_tokenizer.bos_token, real_tokenizer.eos_token) == ("<s>", "</s>")
    assert (real_tokenizer.bos_token_id, real_tokenizer.eos_token_id) == (1, 2)
    assert real_tokenizer.pad_token_id == 2  # Llama-2 has no pad token: eos, masked out of the loss


def test_llama2_chat_format_with_real_tokenizer(real_tokenizer) -> None:
    style = PromptStyle(instruction="Derive it", system="Be brief.")
    text = style.render(real_tokenizer, "Lungs clear.")
    assert text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nDerive it.\n\nFindings: Lungs clear. [/INST]"
    tokens = real_tokenizer.convert_ids_to_tokens(real_tokenizer(text, add_special_tokens=False).input_ids)
    assert tokens[:4] == ["<s>", "[", "INST", "]"]  # <s> is the special token, not the text "<s>"
    assert tokens.count("<s>") == 1 and tokens[-4:] == ["▁[", "/", "INST", "]"]


def test_template_without_system_role_is_one_clear_error(llama2_real_tokenizer, tmp_path) -> None:
    from conftest import MISTRAL_CHAT_TEMPLATE

    from radllama.errors import RadLlamaError
    from radllama.models.loading import load_tokenizer

    tok = load_tokenizer(llama2_real_tokenizer)
    tok.chat_template = MISTRAL_CHAT_TEMPLATE
    with pytest.raises(RadLlamaError, match=r"accepts no system message .*prompt\.system=null"):
        PromptStyle(system="Be brief.").render(tok, "Lungs clear.")
    assert PromptStyle(system=None).render(tok, "Lungs clear.").startswith("<s>[INST] ")
    # Other refusals (roles out of order) are one clear line too.
    two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(RadLlamaError, match="refused the messages: Conversation roles must alternate"):
        PromptStyle(system=None).render_messages(tok, two_users)
