"""The browser tests' shared helpers. Their fixtures, `server` (a real `nas serve` app in
uvicorn on a free port) and `page` (a chromium page whose JavaScript errors fail the test),
are in this folder's conftest.py; a browser test module sets `pytestmark = needs_browser`."""

from __future__ import annotations

import os
import re
import shutil

import httpx
import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # a dev dependency: without it, the suite skips
    sync_playwright = None

CHROMIUM = shutil.which("chromium")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or sync_playwright is None,
    reason="needs playwright (python) and a chromium on PATH",
)
# the sandbox needs namespaces a container may lack; no GPU and a small /dev/shm here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SEARCH_SECONDS = 90  # a worker process imports torch, then runs 3 tiny generations
SCREENSHOTS = os.environ.get("NAS_WEB_SCREENSHOTS")  # a folder: save the page as it was seen
POLL_SECONDS = 2  # the page's POLL_MS: a poll that went on would ask again within this


def requests_to(page, pattern: str) -> list[str]:
    """The paths of the page's requests (from now on) that match `pattern` in full."""
    paths: list[str] = []

    def seen(request):
        path = httpx.URL(request.url).path
        if re.fullmatch(pattern, path):
            paths.append(path)

    page.on("request", seen)
    return paths


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"web-{name}.png"), full_page=True)


def fill_form(page, server, supernet, predictor, population="8", generations="3"):
    """The launch form, filled for a tiny search on the STM32F746 (not yet submitted)."""
    page.goto(f"{server}/#/new")
    expect(page.locator(".device").first).to_be_visible()
    screenshot(page, "form")
    page.fill("#f-name", "web-search")
    page.fill("#f-supernet", supernet)
    page.fill("#f-predictor", predictor)
    page.select_option("#f-evaluation", "predictor")
    page.check("input[name=device][value=stm32f746]")
    page.fill("#f-stm32f746-peak_sram_kb", "12")
    page.fill("#f-stm32f746-flash_kb", "600")
    page.fill("#f-population", population)
    page.fill("#f-generations", generations)
    page.fill("#f-seed", "0")


def red_point(page) -> tuple[float, float]:
    """The page position of the first canvas pixel of exact front red (#dc2626): a front
    point, for a test to hover or click."""
    return page.evaluate(
        """() => { const c = document.querySelectorAll('.plot-stage canvas')[1];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const r = c.getBoundingClientRect(), k = c.width / r.width;
        for (let i = 0; i < d.length; i += 4)
          if (d[i] === 0xdc && d[i + 1] === 0x26 && d[i + 2] === 0x26)
            return [r.left + ((i / 4) % c.width) / k, r.top + Math.floor(i / 4 / c.width) / k];
        return null; }"""
    )
