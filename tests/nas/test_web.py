"""The web page at / in a real browser (Playwright, Debian's chromium) against a real server:
a search launched from the form runs to the end, the plot draws the API's front, a tighter
limit re-filters it as `nas pareto --where` does, and an exported ONNX file downloaded from
the candidate panel runs in onnxruntime. Bad form values are shown beside their fields."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from nas.service.app import create_app
from nas.store import Store

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # a dev dependency: without it, the suite skips
    sync_playwright = None

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or sync_playwright is None,
    reason="needs playwright (python) and a chromium on PATH",
)
# the sandbox needs namespaces a container may lack; no GPU and a small /dev/shm here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SEARCH_SECONDS = 90  # a worker process imports torch, then runs 3 tiny generations
SCREENSHOTS = os.environ.get("NAS_WEB_SCREENSHOTS")  # a folder: save the page as it was seen


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"web-{name}.png"), full_page=True)


@pytest.fixture
def server(tmp_path):
    """`nas serve`'s app on a fresh SQLite file, in uvicorn on a free port (a thread)."""
    app = create_app(Store(f"sqlite:///{tmp_path / 'web.db'}"), tmp_path / "data", supervise=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=15)
    app.state.jobs.stop(terminate_workers=True)  # any worker still running is ours
    sock.close()


@pytest.fixture
def page():
    """A chromium page; JavaScript errors in it fail the test."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1360, "height": 900}
        )
        context.set_default_timeout(15_000)
        tab = context.new_page()
        tab.on("pageerror", lambda err: errors.append(str(err)))
        yield tab
        browser.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


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


def a_tighter_limit(api, search_id, front):
    """A --where condition between two front values that leaves fewer points on the front
    (a removed point can uncover others, so the count is asked of the API, not assumed)."""
    for metric in ("stm32f746.peak_sram_kb", "stm32f746.flash_kb"):
        values = sorted({row[metric] for row in front})
        for low, high in itertools.pairwise(values):
            text = f"{(low + high) / 2:.6g}"
            tighter = api.get(
                f"/searches/{search_id}/pareto", params={"where": f"{metric}<={text}"}
            ).json()["front"]
            if 0 < len(tighter) < len(front):
                return metric, text, tighter
    raise AssertionError(f"no limit between front values shrinks the front: {front}")


def test_a_search_launched_from_the_page_is_plotted_filtered_and_exported(
    server, page, tiny_supernet, tiny_predictor, tmp_path
):
    fill_form(page, server, str(tiny_supernet.path), tiny_predictor)
    page.click("#launch-button")
    page.wait_for_url("**/#/searches/*")
    search_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#search-status")).to_have_text("completed", timeout=SEARCH_SECONDS * 1000)
    screenshot(page, "search")

    api = httpx.Client(base_url=server, timeout=30)
    info = api.get(f"/searches/{search_id}").json()
    assert info["status"] == "completed" and info["candidates"] == 24
    assert info["targets"]["stm32f746"]["limits"] == {"peak_sram_kb": 12, "flash_kb": 600}
    front = api.get(f"/searches/{search_id}/pareto").json()["front"]
    assert front
    expect(page.locator("circle.front")).to_have_count(len(front))
    expect(page.locator(".front-table tbody tr")).to_have_count(len(front))

    metric, limit, tighter = a_tighter_limit(api, search_id, front)
    page.fill(f'input[data-metric="{metric}"]', limit)
    expect(page.locator("circle.front")).to_have_count(len(tighter))
    expect(page.locator(".front-table tbody tr")).to_have_count(len(tighter))
    shown = page.locator(".front-table tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.candidate))"
    )
    assert sorted(shown) == sorted(row["candidate"] for row in tighter)

    first = tighter[0]["candidate"]
    page.click(f'.front-table tbody tr[data-candidate="{first}"]')
    expect(page.locator("#panel h2")).to_have_text(f"Candidate {first}")
    expect(page.locator("#panel .block").first).to_be_visible()
    screenshot(page, "panel")
    page.click("#export-button")
    onnx_link = page.locator('#panel a[data-format="onnx"]')
    expect(onnx_link).to_be_visible(timeout=60_000)
    expect(page.locator("#panel a[download]", has_text="model_card.json")).to_be_visible()
    screenshot(page, "export")
    with page.expect_download() as download:
        onnx_link.click()
    path = tmp_path / "downloaded.onnx"
    download.value.save_as(path)

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    given = session.get_inputs()[0]
    shape = [1] + [d if isinstance(d, int) else 1 for d in given.shape[1:]]
    logits = session.run(None, {given.name: np.random.rand(*shape).astype(np.float32)})[0]
    assert logits.shape[0] == 1 and np.isfinite(logits).all()

    page.goto(f"{server}/#/")  # the list shows the search, finished
    row = page.locator(f'tr[data-search="{search_id}"]')
    expect(row.locator(".status")).to_have_text("completed")
    screenshot(page, "list")


def test_a_bad_value_is_shown_beside_its_field(server, page, tiny_supernet, tiny_predictor):
    fill_form(page, server, str(tiny_supernet.path), tiny_predictor, generations="0")
    page.click("#launch-button")
    beside = page.locator('[data-field="algorithm.generations"] .field-error')
    expect(beside).to_contain_text("greater than or equal to 1")

    page.fill("#f-generations", "3")
    page.fill("#f-stm32f746-peak_sram_kb", "-8")
    page.click("#launch-button")
    expect(beside).to_have_count(0)  # errors of the last submit only
    limit = page.locator('[data-field="targets.stm32f746.peak_sram_kb"] .field-error')
    expect(limit).to_contain_text("a limit must be > 0")
    screenshot(page, "form-error")
    assert httpx.get(f"{server}/searches").json()["total"] == 0  # nothing was launched
