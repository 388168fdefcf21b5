"""The assistant page in headless Chromium: findings -> impression, and a streamed chat turn."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from test_serve_support import BACKENDS, FINDINGS, live_server, tiny_model_dir

from radllama.consistency import check, flagged
from radllama.generate.impressions import generate_impressions

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

        page.click("summary")
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
