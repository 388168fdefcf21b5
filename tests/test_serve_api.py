"""The OpenAI-compatible API with the official openai client, on a real uvicorn server (loopback).

Every answer is compared with ``generate_impressions`` (greedy, transformers backend) on the same
findings, so the server must render the trained prompt exactly and keep batch rows apart — on both
inference backends (every test here runs on each).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from test_serve_support import BACKENDS, FINDINGS, live_server, tiny_loaded, tiny_model_dir

from radllama.consistency import FIELDS, check
from radllama.generate.impressions import generate_impressions
from radllama.retrieval import retrieved_impressions

MAX = 12  # new tokens: the random tiny model never stops early, so keep answers short


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def base(backend: str) -> Iterator[str]:
    with live_server(backend=backend) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def trained_messages(findings: list[str]) -> list[list[dict[str, str]]]:
    """The chat messages that render to the trained impression prompt (style + retrieval)."""
    loaded = tiny_loaded()
    shown = retrieved_impressions(loaded.retriever, findings, loaded.style.retrieval_k)
    return [loaded.style.messages(f, ex) for f, ex in zip(findings, shown, strict=True)]


def test_models_and_health(client: openai.OpenAI, base: str, backend: str) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [tiny_loaded().name]
    # The model card rides along as an extra field the official client keeps: the tiny model has no
    # training record, so nothing is claimed and chat is not withheld.
    card = client.models.list().data[0].card
    assert card["name"] == tiny_loaded().name and card["tasks"] is None and card["chat"] is True
    assert card["serving"]["default_decoding"] == "greedy (the model alone)"  # what a plain request gets
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["backend"] == backend


def test_impressions_chat_and_completions_equal_generate_impressions(client: openai.OpenAI, base: str) -> None:
    findings = FINDINGS[:3]
    expected = generate_impressions(str(tiny_model_dir()), None, findings, max_new_tokens=MAX)
    assert all(expected) and len(set(expected)) > 1  # a meaningful comparison: non-empty, prompt-dependent

    r = httpx.post(f"{base}/v1/impressions", json={"findings": findings, "max_tokens": MAX}, timeout=60)
    assert r.status_code == 200
    assert r.json()["impressions"] == expected

    loaded = tiny_loaded()
    for msgs, want in zip(trained_messages(findings), expected, strict=True):
        chat = client.chat.completions.create(model=loaded.name, messages=msgs, max_tokens=MAX)
        assert chat.choices[0].message.content == want
        assert chat.choices[0].finish_reason == "length"
        assert chat.usage.completion_tokens == MAX and chat.usage.prompt_tokens > 50

        # max_completion_tokens is the newer name of the same limit; the user message alone gets
        # the style's system prompt put first, so it renders the same trained prompt.
        chat = client.chat.completions.create(model=loaded.name, messages=msgs[1:], max_completion_tokens=MAX)
        assert chat.choices[0].message.content == want

        prompt = loaded.style.render_messages(loaded.tokenizer, msgs)
        comp = client.completions.create(model=loaded.name, prompt=prompt, max_tokens=MAX)
        assert comp.choices[0].text == want


def test_impressions_carry_the_consistency_check(base: str) -> None:
    findings = ["Large left pneumothorax. Heart size normal.", FINDINGS[0]]
    body = httpx.post(f"{base}/v1/impressions", json={"findings": findings, "max_tokens": MAX}, timeout=60).json()
    for i, (f, text) in enumerate(zip(findings, body["impressions"], strict=True)):
        assert {key: body[key][i] for key in FIELDS} == check(f, text)
    # The random tiny model never writes "pneumothorax": the stated finding is reported omitted.
    assert "Pneumothorax" in body["omitted"][0]
    assert {"hedge_dropped", "hedge_asserted"} <= set(FIELDS) <= set(body)  # issue #30: hedged findings too


def test_streaming_chat_yields_the_same_text_token_by_token(client: openai.OpenAI) -> None:
    msgs = trained_messages(FINDINGS[3:4])[0]
    want = client.chat.completions.create(model="radllama", messages=msgs, max_tokens=MAX).choices[0].message
    chunks = list(
        client.chat.completions.create(
            model="radllama", messages=msgs, max_tokens=MAX, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3  # token by token, not one blob
    assert "".join(deltas) == want.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == MAX and not chunks[-1].choices


def test_completions_stream_stop_n_seed_and_unknown_fields(client: openai.OpenAI, base: str, backend: str) -> None:
    full = client.completions.create(model="radllama", prompt="The heart is", max_tokens=MAX).choices[0].text
    stop = full[len(full) // 2 : len(full) // 2 + 3]  # text from the middle of the greedy answer
    assert len(full) > 10
    cut = client.completions.create(model="radllama", prompt="The heart is", max_tokens=MAX, stop=[stop, "zzz"])
    assert cut.choices[0].text == full[: full.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"
    assert cut.usage.completion_tokens < MAX  # the row stopped decoding at the stop string

    streamed = client.completions.create(model="radllama", prompt="The heart is", max_tokens=MAX, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == full

    kw = {"model": "radllama", "prompt": "The lungs", "max_tokens": MAX, "temperature": 1.0}
    sampled = client.completions.create(n=8, **kw)
    assert len(sampled.choices) == 8 and len({c.text for c in sampled.choices}) > 1  # really sampled
    if backend == "vllm":
        # A per-request seed kills vLLM's CPU engine: it must be refused before it reaches it.
        with pytest.raises(openai.BadRequestError, match="seed"):
            client.completions.create(n=2, seed=7, **kw)
        assert (
            client.completions.create(model="radllama", prompt="The heart is", max_tokens=MAX).choices[0].text == full
        )
    else:
        a = client.completions.create(n=2, seed=7, **kw)
        b = client.completions.create(n=2, seed=7, **kw)
        assert len(a.choices) == 2 and [c.text for c in a.choices] == [c.text for c in b.choices]
    # A greedy request's seed changes nothing, on every backend.
    seeded = client.completions.create(model="radllama", prompt="The heart is", max_tokens=MAX, seed=3)
    assert seeded.choices[0].text == full

    # Unknown fields are tolerated, as OpenAI clients send many.
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "logit_bias": {}, "user": "u1",
            "frequency_penalty": 0, "tools": None}  # fmt: skip
    r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.slow
def test_32_concurrent_clients_are_batched_without_cross_talk(client: openai.OpenAI, base: str, backend: str) -> None:
    msgs = trained_messages(FINDINGS)

    def ask(m: list[dict[str, str]]) -> str:
        return client.chat.completions.create(model="radllama", messages=m, max_tokens=MAX).choices[0].message.content

    single = [ask(m) for m in msgs]  # one at a time: each decoded alone
    assert len(set(single)) > 3

    before = httpx.get(f"{base}/health").json()
    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, msgs))
    after = httpx.get(f"{base}/health").json()

    assert together == single  # each client gets its own answer, identical to decoding it alone
    if backend == "transformers":  # request-level batches: 32 requests shared far fewer generate calls
        assert after["batches"] - before["batches"] <= 16, (before, after)
    else:  # vLLM batches inside its engine: the requests were in it together
        assert after["peak_in_flight"] >= 8, after


def test_concurrent_impressions_answer_as_generate(base: str) -> None:
    findings = FINDINGS[:8]
    expected = generate_impressions(str(tiny_model_dir()), None, findings, max_new_tokens=MAX)

    def ask(f: str) -> str:
        r = httpx.post(f"{base}/v1/impressions", json={"findings": [f], "max_tokens": MAX}, timeout=60)
        return r.json()["impressions"][0]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, findings)) == expected
