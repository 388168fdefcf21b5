"""Streaming decodes each new token once (tokenizers' DecodeStream), and says exactly what a full decode
of the tokens so far says: radllama-mini's byte-level BPE and the real 32k Llama SentencePiece tokenizer
(byte fallback: one accented or CJK character can take several tokens)."""

from __future__ import annotations

import pytest
from test_serve_support import SENTENCES, VOCAB

from radllama.models.loading import load_tokenizer
from radllama.models.mini import train_tokenizer
from radllama.serve.batching import Row, incremental, push_token

TEXT = "Größe 5 mm — kleine Effusion; 肺 clear.  Heart size normal.\nNo pneumothorax."


def _streamed(tokenizer, ids: list[int]) -> list[str]:
    row = Row(prompt_ids=[], max_new_tokens=len(ids) + 1, stop=("@@@",))  # a stop string: text every step
    seen = []
    for token in ids:
        push_token(row, token, tokenizer, eos=set())
        seen.append(row.text)
    assert row.decoder is not None  # one incremental step per token, not a decode of all so far
    return seen


@pytest.mark.parametrize("kind", ["mini", "llama2"])
def test_incremental_text_equals_full_decode(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "mini":
        tokenizer = train_tokenizer(SENTENCES * 4, vocab_size=VOCAB)
    else:
        tokenizer = load_tokenizer(request.getfixturevalue("llama2_real_tokenizer"))
    assert incremental(tokenizer)  # the fast path is the one under test
    ids = tokenizer(TEXT, add_special_tokens=False).input_ids
    for k, text in enumerate(_streamed(tokenizer, ids), 1):
        full = tokenizer.decode(ids[:k], skip_special_tokens=True)
        if not full.endswith("\ufffd"):  # a character still incomplete: the stream holds it back
            assert text == full, (k, text, full)
    assert _streamed(tokenizer, ids)[-1] == tokenizer.decode(ids, skip_special_tokens=True)
