"""The assistant page in headless Chromium: findings -> impression, and a streamed chat turn."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from live_server import live_uvicorn
from playwright.sync_api import expect
from test_serve_support import BACKENDS, FINDINGS, live_server, tiny_loaded, tiny_model_dir

from radllama.consistency import check, flagged
from radllama.generate.impressions import generate_impressions
from radllama.models.card import add_benchmarks, model_card
from radllama.serve.app import create_app
from radllama.serve.service import ModelService, ServeSettings
from radllama.train.config import dump_config, load_config

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
MAX = 12


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_page_generates_an_impression_and_chats(chromium, backend: str) -> None:  # noqa: ANN001 (playwright Browser)
    findings = FINDINGS[2]
    (expected,) = generate_impressions(str(tiny_model_dir()), None, [findings], max_new_tokens=MAX)
    ARTIFACTS.mkdir(exist_ok=True)
    with live_server(backend=backend) as base:
        context = chromium.new_context(viewport={"width": 1100, "height": 760})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base)
        expect(page.locator("#model-name")).to_have_text(tiny_model_dir().name)

        page.click(".settings summary")
        page.fill("#max-tokens", str(MAX))
        page.fill("#findings", findings)
        page.click("#generate")
        expect(page.locator("#impression")).to_have_text(expected, timeout=60_000)
        expect(page.locator("#impression-meta")).to_contain_text(f"{MAX} tokens")
        warning = page.locator("#impression-warning")
        if flagged(check(findings, expected)):
            expect(warning).to_be_visible()
        else:
            expect(warning).to_be_hidden()

        # Findings with a pneumothorax the random tiny model cannot name: the warning says so.
        page.fill("#findings", "Large left pneumothorax. Heart size normal.")
        page.click("#generate")
        expect(warning).to_be_visible(timeout=60_000)
        expect(warning).to_contain_text("Omitted: the findings state Pneumothorax")
        page.screenshot(path=str(ARTIFACTS / f"serve-{backend}.png"), full_page=True)

        message = "The lungs are clear."
        want = httpx.post(
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": message}], "max_tokens": MAX},
            timeout=60,
        ).json()["choices"][0]["message"]["content"]
        page.click("#tab-chat")
        page.fill("#chat-input", message)
        page.keyboard.press("Enter")
        expect(page.locator(".msg.user")).to_have_text(message)
        expect(page.locator(".msg.assistant")).to_have_text(want, timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / f"serve-chat-{backend}.png"), full_page=True)
        context.close()
    assert errors == []


@pytest.mark.slow
def test_page_shows_the_model_card_and_no_chat_for_an_impression_only_model(chromium, tmp_path: Path) -> None:  # noqa: ANN001
    data, lora = tmp_path / "data", tmp_path / "lora"
    data.mkdir()
    lora.mkdir()
    (data / "manifest.json").write_text(json.dumps({"source": "openi", "counts": {"train": 2551}}))
    cfg = load_config(None, [f"data.train={data / 'train.jsonl'}", f"output_dir={lora}"])
    (lora / "config.yaml").write_text(dump_config(cfg))
    (lora / "train_summary.json").write_text(json.dumps(
        {"total_parameters": 3400128, "examples": 2551, "examples_per_task": {"impression": 2551}}))  # fmt: skip
    add_benchmarks(lora, [
        {"name": "critical-finding recall", "value": 0.25, "on": "faithfulness, held-out"},
        {"name": "finding named (faithful MBR)", "value": 0.9, "on": "heldout-v2"},
        {"name": "finding named (model alone, greedy)", "value": 0.6, "on": "heldout-v2"},
    ])  # fmt: skip
    service = ModelService(tiny_loaded(), ServeSettings(), card=model_card(tiny_model_dir(), lora))
    with live_uvicorn(create_app(service)) as base:
        # The API still answers chat for clients; only the page stops offering it.
        chat = httpx.post(f"{base}/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}],
                          "max_tokens": 2}, timeout=60)  # fmt: skip
        assert chat.status_code == 200
        page = chromium.new_page()
        page.goto(base)
        card = page.locator("#model-card")
        expect(card).to_be_visible()
        page.click("#model-card summary")
        expect(card).to_contain_text("2,551 OpenI reports")
        expect(card).to_contain_text("3,400,128")
        expect(card).to_contain_text("critical-finding recall: 0.25 (faithfulness, held-out)")
        # Each figure under its decoding; the card says what the API serves by default (issue #30).
        expect(page.locator("#card-facts")).to_contain_text("Served by default")
        expect(page.locator("#card-facts")).to_contain_text("greedy (the model alone)")
        expect(page.locator("#card-serving")).to_contain_text("answer with greedy decoding: the model alone")
        groups = page.locator("#card-benchmarks > li")
        expect(groups.nth(0)).to_contain_text("Decoding: model alone, greedy — what this API serves by default")
        expect(groups.nth(0)).to_contain_text("finding named: 0.6 (heldout-v2)")
        expect(groups.nth(1)).to_contain_text("Decoding: faithful MBR — only when a request asks for it")
        expect(groups.nth(2)).to_contain_text("Decoding not recorded")
        expect(page.locator("#chat-note")).to_be_visible()
        expect(page.locator("#tab-chat")).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "serve-card.png"), full_page=True)
        page.close()
