"""The server's step-level engine: rows that join and leave a running batch get the answers they
would get alone, sampled rows with a seed draw the same text whatever else is in the batch.

The engine is driven round by round (``iterate``) with rows joining at chosen rounds, so every
path of the key/value pool is taken: a first row alone, a second sharing the first's prompt
beginning, a longer prompt joining a running batch (room opened on the window's left), rows
waiting for a free slot, rows leaving mid-batch (last rows moved into their slots), and buffers
running out of columns (laid out again).
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter

import httpx
import pytest
import torch
from test_serve_support import FINDINGS, live_server, tiny_model_dir

import radllama.serve.continuous as continuous
from radllama.generate.engine import GenerationSettings, generate_batch
from radllama.generate.impressions import generate_impressions
from radllama.models.loading import load_for_inference
from radllama.serve.batching import Job, Row, Sampling
from radllama.serve.continuous import ContinuousEngine, supports
from radllama.train.tiny import INVENTED_TEXT, build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [t[: 12 + 11 * i] for i, t in enumerate(INVENTED_TEXT)] + ["No", "The heart is normal in size. " * 4]
SHARED = ["Derive the impression from the findings. Findings: " + p for p in PROMPTS]
# (round at which the row arrives, max new tokens): with 4 slots, rows 4-6 wait for free ones.
ARRIVALS = [(0, 9), (1, 30), (3, 14), (3, 40), (4, 6), (4, 25), (5, 33)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A tiny Llama with sharp attention (wrong positions or masks change its tokens) and an EOS
    it really emits mid-answer, so rows end at different rounds."""
    loaded = load_for_inference(build_tiny_model("llama", tmp_path_factory.mktemp("m") / "llama"), device="cpu")
    model, tok = loaded.model, loaded.tokenizer
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(6)
    produced = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            enc = tok([prompt], return_tensors="pt", add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
            produced.append(set(out[0, enc["input_ids"].shape[1] + 1 : enc["input_ids"].shape[1] + 8].tolist()))
    counts = Counter(t for row in produced for t in row)
    eos = max((t for t, n in counts.items() if n < len(PROMPTS)), key=lambda t: counts[t])
    tok.eos_token = tok.convert_ids_to_tokens(eos)
    return model, tok


def alone(model, tok, prompt: str, max_new: int) -> tuple[str, int, str]:
    """Text, completion tokens and finish reason from ``model.generate`` for this prompt alone."""
    c = generate_batch(model, tok, [prompt], GenerationSettings(max_new_tokens=max_new, fast_greedy=False))[0]
    return c.text, c.completion_tokens, c.finish_reason


@pytest.mark.parametrize("slots", [4, 6])
@pytest.mark.parametrize("prompts", [PROMPTS, SHARED], ids=["distinct", "shared-prefix"])
def test_rows_joining_and_leaving_get_the_answers_they_get_alone(
    tiny: tuple, prompts: list[str], slots: int, monkeypatch
) -> None:
    model, tok = tiny
    monkeypatch.setattr(continuous, "SPARE_COLUMNS", 3)  # buffers run out of columns every few steps
    assert supports(model)
    engine = ContinuousEngine(model, tok, max_batch=slots)
    rows = [Row(tok(p, add_special_tokens=False).input_ids, n) for p, (_, n) in zip(prompts, ARRIVALS, strict=False)]
    sizes, rounds = [], 0
    while rounds == 0 or engine.running.size or engine.waiting:
        engine.waiting.extend(r for r, (at, _) in zip(rows, ARRIVALS, strict=False) if at == rounds)
        engine.iterate()
        sizes.append(engine.running.size)
        rounds += 1
    assert max(sizes) == slots and engine.running.free == slots  # the slots filled up, then emptied
    assert engine.running.cache.layers[0].kbuf.shape[0] == slots  # with 6, the pool grew from 4 slots
    assert engine.batches >= 4  # rows joined at several rounds
    reasons = set()
    for row, prompt, (_, n) in zip(rows, prompts, ARRIVALS, strict=False):
        expected = alone(model, tok, prompt, n)
        assert (row.text, row.completion_tokens, row.finish_reason) == expected, prompt
        reasons.add(row.finish_reason)
    assert reasons == {"stop", "length"}  # some rows ended on EOS mid-batch, others ran to their limit


def test_seeded_rows_draw_the_same_text_whatever_shares_their_batch(tiny: tuple) -> None:
    model, tok = tiny
    loop = asyncio.new_event_loop()  # events are queued on it, never read: the test reads the rows

    def run(jobs: list[Job]) -> None:
        engine = ContinuousEngine(model, tok, max_batch=8)
        for job in jobs:
            engine.waiting.extend(job.rows)
        while engine.running.size or engine.waiting:
            engine.iterate()

    def seeded(seed: int) -> Job:
        ids = tok(PROMPTS[1], add_special_tokens=False).input_ids
        return Job([Row(ids, 15), Row(ids, 15)], Sampling(temperature=1.0, seed=seed), loop)

    try:
        first = seeded(7)
        run([first])
        again, other, greedy = seeded(7), seeded(8), Job([Row(tok("No").input_ids, 15)], Sampling(), loop)
        run([greedy, other, again])  # a different batch, and a different position in it
    finally:
        loop.close()
    texts = [r.text for r in first.rows]
    assert [r.text for r in again.rows] == texts
    assert texts[0] != texts[1]  # the n choices of one request are different draws
    # Another seed draws other text, also for its other choices (no shifted shared streams).
    assert not set(texts) & {r.text for r in other.rows}


def test_one_request_cannot_break_the_batch_it_shares(tiny: tuple) -> None:
    """A temperature too small to divide by, next to other rows: it decodes as greedy, and every
    row of the batch gets its answer."""
    model, tok = tiny
    loop = asyncio.new_event_loop()
    ids = tok(PROMPTS[2], add_special_tokens=False).input_ids
    try:
        tiny_t = Job([Row(ids, 10)], Sampling(temperature=1e-40), loop)
        hot = Job([Row(ids, 10)], Sampling(temperature=1.5, top_p=0.9, seed=3), loop)
        greedy = Job([Row(ids, 10)], Sampling(), loop)
        engine = ContinuousEngine(model, tok, max_batch=4)
        for job in (tiny_t, hot, greedy):
            engine.waiting.extend(job.rows)
        while engine.running.size or engine.waiting:
            engine.iterate()
    finally:
        loop.close()
    assert tiny_t.rows[0].text == greedy.rows[0].text == alone(model, tok, PROMPTS[2], 10)[0]
    assert all(r.finish_reason in ("stop", "length") for j in (tiny_t, hot, greedy) for r in j.rows)


def test_a_failing_step_fails_its_requests_and_the_server_goes_on() -> None:
    """A forward pass that raises (as on running out of memory) answers the requests in flight with
    a 500 JSON error; the engine starts afresh and the next request is answered normally."""
    loaded = load_for_inference(tiny_model_dir(), device="cpu")  # its own copy: its forward is broken below
    forward, calls = loaded.model.forward, []

    @functools.wraps(forward)
    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # mid-decoding: after the prefill and a step
            raise RuntimeError("out of memory")
        return forward(*args, **kwargs)

    loaded.model.forward = failing_once
    expected = generate_impressions(str(tiny_model_dir()), None, FINDINGS[:1], max_new_tokens=8)
    with live_server(loaded=loaded) as url:
        body = {"findings": FINDINGS[:1], "max_tokens": 8}
        failed = httpx.post(f"{url}/v1/impressions", json=body, timeout=60)
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "generation_failed"
        assert "out of memory" not in failed.text  # the exception type only, no internals
        ok = httpx.post(f"{url}/v1/impressions", json=body, timeout=60)
        assert ok.status_code == 200 and ok.json()["impressions"] == expected
