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
