"""The console's browser tests' tools: Debian's Chromium driven by Playwright
(never a downloaded browser), one browser context per test, screenshots, and
orders placed straight through the gateway's JSON API."""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "reports" / "console"
PAGES = ("products", "orders", "order", "dashboard", "review")
# Every action and assertion on a page is bounded by this unless a step says
# otherwise (Playwright's own default for assertions is 5 s: short on 2 busy cores).
TIMEOUT_MS = 10_000

CARD_NUMBER = "4111111111111111"
DECLINED_CARD_NUMBER = "4000000000000002"
ADDRESS = {"street_address": "1 Main St", "city": "Springfield", "state": "IL", "country": "US", "zip_code": "62701"}


@contextmanager
def chromium() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make debs-test` installs Debian's chromium")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Console:
    """One browser context on the gateway (a fresh localStorage, like a new
    visitor), recording every script error its pages raise."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        # A fixed locale, time zone and size: the same money formatting and screenshots everywhere.
        self.context: BrowserContext = browser.new_context(
            base_url=base_url, locale="en-US", timezone_id="UTC", viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []

    def open(self, path: str) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: self._console(page, message))
        page.goto(path)
        return page

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        # Chromium logs each HTTP error answer ("Failed to load resource: ... 404"):
        # the pages expect some (an order not stored yet, a refused request) and show them.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"{page.url}: console: {message.text}")

    def close(self) -> None:
        self.context.close()


# The form controls and buttons a screen reader could not name (no label, no
# aria-label, no text), and the page's h1 count: every page has exactly one.
UNNAMED = """() => ({
  unnamed: [...document.querySelectorAll('input, button, select, textarea')]
    .filter((e) => !e.labels?.length && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map((e) => e.outerHTML.slice(0, 120)),
  h1: document.querySelectorAll('h1').length,
})"""


def accessibility_gaps(page: Page) -> list[str]:
    found = page.evaluate(UNNAMED)
    gaps = [f"unnamed control: {html}" for html in found["unnamed"]]
    if found["h1"] != 1:
        gaps.append(f"{found['h1']} h1 headings")
    return gaps


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


def place_order(
    base_url: str, user_id: str, items: list[tuple[str, int]], card_number: str = CARD_NUMBER
) -> dict[str, Any]:
    """POST /api/orders, as a script calls the gateway."""
    body = {
        "user_id": user_id,
        "items": [{"product_id": product, "quantity": quantity} for product, quantity in items],
        "address": ADDRESS,
        "email": f"{user_id}@example.com",
        "credit_card": {"number": card_number, "cvv": 123, "expiration_year": 2039, "expiration_month": 12},
    }
    answer = httpx.post(f"{base_url}/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
    assert answer.status_code == 201, answer.text
    placed: dict[str, Any] = answer.json()
    return placed
