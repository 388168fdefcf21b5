"""Shared pytest fixtures.

``chromium`` — a headless Playwright ``Browser`` for page tests; reuse it in any area:

    def test_page(chromium):
        page = chromium.new_page()
        page.goto(url)

It launches Debian's system Chromium (``/usr/bin/chromium``; install with
``apt-get install -y chromium``) through Playwright's ``executable_path``: no browser downloads,
no ``playwright install``. Flags: --headless --no-sandbox --disable-gpu --disable-quic
--no-first-run --disable-background-networking --disable-component-update --disable-sync.
Playwright gives every launch a fresh, temporary user-data-dir (deleted on close), so no
profile state leaks between tests. It never skips: a missing Chromium FAILS the test, saying
how to install it. The browser is session-scoped; open a new context/page per test.

``llama2_real_tokenizer`` / ``llama3_style_model`` — folders of a tiny random Llama (2 layers,
64 wide) with the real 32k Llama-family SentencePiece tokenizer (from mistral_common), Llama-2's
chat template, or Llama-3's turn tokens with two stop ids in ``generation_config.json``.
Session-scoped, read-only; ``build_real_tokenizer_llama(folder, chat_template=...)`` makes others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """A headless system Chromium (Playwright ``Browser``) with a fresh temporary profile."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} not found: install it with `apt-get install -y chromium`", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run several times faster on one thread when other jobs share the cores.

    Use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- Real Llama-family tokenizers, offline -----------------------------------------------------
# mistral_common ships Mistral-7B v0.1's SentencePiece model (32,000 tokens, <s>=1, </s>=2): the
# Llama-2 tokenizer family. Loading it needs sentencepiece and protobuf (core dependencies).

# Mistral-7B-Instruct-v0.1's template: no system role (a system message breaks the alternation).
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
# Llama-3's turn format; assistant turns end with <|eot_id|>, documents with </s> (end of text).
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
LLAMA3_SPECIAL_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def sentencepiece_model_file() -> Path:
    """The real 32k Llama-family ``tokenizer.model`` inside the installed mistral_common package."""
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    assert path.is_file(), f"{path} missing: mistral_common changed its package data"
    return path


def build_real_tokenizer_llama(
    folder: Path, *, chat_template: str | None = None, llama3_style: bool = False, seed: int = 0
) -> Path:
    """A tiny random Llama (2 layers, 64 wide, head size 32) with the real 32k SentencePiece tokenizer.

    The folder looks like a Llama-2 checkout: ``tokenizer.model`` + ``tokenizer_config.json`` (no
    ``tokenizer.json``, so loading goes through sentencepiece), ``config.json``, safetensors and
    ``generation_config.json``. ``chat_template`` defaults to Llama-2's. ``llama3_style`` adds
    Llama-3's header and end-of-turn tokens and lists two stop ids in ``generation_config``
    (``<|eot_id|>`` and ``</s>``), as Llama-3-Instruct does.
    """
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from radllama.prompts import LLAMA2_CHAT_TEMPLATE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sentencepiece_model_file(), folder / "tokenizer.model")
    tok = LlamaTokenizer.from_pretrained(str(folder))
    if llama3_style:
        tok.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIAL_TOKENS})
    tok.chat_template = chat_template or (LLAMA3_CHAT_TEMPLATE if llama3_style else LLAMA2_CHAT_TEMPLATE)
    tok.save_pretrained(str(folder))
    (folder / "tokenizer.json").unlink(missing_ok=True)  # as Meta's checkouts: the .model file only
    eos = [tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id] if llama3_style else tok.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head size 32
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def llama2_real_tokenizer(tmp_path_factory) -> Path:
    """Folder of a tiny random Llama-2-chat-format model with the real 32k SentencePiece tokenizer.

    Treat it as read-only (session-scoped); copy it to change it.
    """
    return build_real_tokenizer_llama(tmp_path_factory.mktemp("llama2-real-tok"))


@pytest.fixture(scope="session")
def llama3_style_model(tmp_path_factory) -> Path:
    """Folder of a tiny random model with Llama-3's turn tokens and two stop ids (read-only)."""
    return build_real_tokenizer_llama(tmp_path_factory.mktemp("llama3-style"), llama3_style=True)


@pytest.fixture(scope="session", autouse=True)
def _stop_the_shared_vllm_engine() -> Iterator[None]:
    """The serve tests share one vLLM engine (test_serve_support.tiny_vllm_engine): stopped while
    pytest's output is still open, so its shutdown logs nowhere closed."""
    yield
    import sys

    support = sys.modules.get("test_serve_support")
    if support is not None and support.tiny_vllm_engine.cache_info().currsize:
        support.tiny_vllm_engine().stop()


# The longest files first: pytest-xdist (scripts/test.sh: two workers, whole files each) hands out files in
# collection order, so a long file collected last runs alone at the end while the other worker idles.
# Within a file the order is kept; a serial run only changes which file comes first.
LONGEST_FILES = ("test_train_distributed.py", "test_inference_backends.py", "test_serve_soak.py", "test_demo.py")


def pytest_collection_modifyitems(items: list) -> None:
    first = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))
