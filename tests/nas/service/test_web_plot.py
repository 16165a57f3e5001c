"""The search page's scatter in a real browser (Playwright, Debian's chromium) over a real
finished search with three objectives: it is painted on a canvas with the API's counts, an
axis change repaints it without asking the server, a tighter limit dims the candidates beyond
it and counts them as the API does, and the keyboard reaches a point and opens it."""

from __future__ import annotations

import re

import httpx
import pytest

from nas.search import launch_search
from nas.store import Store
from tests.nas.service.web import expect, needs_browser, red_point, requests_to, screenshot

pytestmark = needs_browser

OBJECTIVES = ["top1", "stm32f746.latency_ms", "h100-sxm.latency_ms"]
LIMIT = "stm32f746.peak_sram_kb"
DIMMED = "#cfdcf3"  # plot.js's colour of a candidate beyond a tightened limit
# a few dozen elements of the scatter's own: never one per point
MAX_PLOT_ELEMENTS = 150


@pytest.fixture
def searched(server, search_config, tmp_path):
    """A completed search of 160 candidates in the server's database, three objectives:
    (the API client, its id)."""
    config = search_config(
        objectives=[
            {"metric": m, "goal": "maximize" if m == "top1" else "minimize"} for m in OBJECTIVES
        ],
        algorithm={"population": 40, "generations": 4, "seed": 1},
        database=f"sqlite:///{tmp_path / 'web.db'}",
    )
    store = Store(config.config.database)
    search_id = launch_search(config, store, progress=False).search_id
    store.dispose()
    return httpx.Client(base_url=server, timeout=30), search_id


def open_search(page, server, search_id):
    page.goto(f"{server}/#/searches/{search_id}")
    expect(page.locator(".plot-stage")).to_have_attribute("data-painted", re.compile(r"\d+"))
    expect(page.locator(".count-line")).to_have_attribute("data-front-count", re.compile(r"\d+"))
    page.wait_for_load_state("networkidle")  # the limit fields' columns, after the first paint


def paints(page) -> int:
    return int(page.locator(".plot-stage").get_attribute("data-painted"))


def wait_for_paint(page, after: int) -> None:
    """Until the scatter was painted again since `after` paints."""
    page.wait_for_function(
        "n => Number(document.querySelector('.plot-stage').dataset.painted) > n", arg=after
    )


def painted_pixels(page, rgb: str | None = None) -> int:
    """Pixels painted on the points' canvas (of colour "#rrggbb" if given)."""
    return page.evaluate(
        """(rgb) => { const c = document.querySelectorAll('.plot-stage canvas')[1];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const want = rgb && [1, 3, 5].map((k) => parseInt(rgb.slice(k, k + 2), 16));
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          const same = !want || (d[i] === want[0] && d[i + 1] === want[1] && d[i + 2] === want[2]);
          if (d[i + 3] && same) n++;
        }
        return n; }""",
        rgb,
    )


def test_a_search_opens_with_its_candidates_painted_and_counted(server, page, searched):
    api, search_id = searched
    open_search(page, server, search_id)
    front = api.get(f"/searches/{search_id}/pareto").json()["front"]
    info = api.get(f"/searches/{search_id}").json()
    counts = page.locator(".count-line")
    expect(counts).to_have_attribute("data-front-count", str(len(front)))
    expect(counts).to_have_attribute("data-feasible-count", str(info["feasible"]))
    expect(counts).to_have_attribute("data-shown-count", str(info["candidates"]))
    assert page.locator("svg.plot circle").count() == 0
    plot_card = page.locator(".plot-stage").locator("xpath=ancestor::section[1]")
    assert plot_card.locator("*").count() <= MAX_PLOT_ELEMENTS
    assert painted_pixels(page) > 1000
    # a third objective: a colour scale, and the legend says why front points lie inside
    expect(page.locator("#axis-colour")).to_have_value("h100-sxm.latency_ms")
    expect(page.locator(".plot-legend")).to_contain_text("non-dominated on all 3 objectives")
    expect(page.locator(".plot-legend")).to_contain_text("h100-sxm.latency_ms (ms)")
    # the best top1 as the CLI prints it: a percentage with two decimals
    expect(page.locator("#search-head")).to_contain_text(f"top1 {info['best']['top1']:.2%}")
    screenshot(page, "plot-open")

    # a front point (red without a colour scale) found in the canvas, hovered, then clicked
    before = paints(page)
    page.select_option("#axis-colour", "")
    wait_for_paint(page, before)
    x, y = red_point(page)
    page.mouse.move(x + 1, y + 2)
    expect(page.locator("#tooltip")).to_be_visible()
    expect(page.locator("#tooltip")).to_contain_text("Pareto front")
    number = int(page.locator("#tooltip b").inner_text().split()[-1])
    page.mouse.click(x + 1, y + 2)
    expect(page.locator("#panel h2")).to_have_text(f"Candidate {number}")
    expect(page.locator("#tooltip")).to_be_hidden()  # it does not stick after the click
    legend = page.locator(".plot-legend").bounding_box()
    panel = page.locator("#panel").bounding_box()
    assert legend["x"] + legend["width"] <= panel["x"], "the panel covers the legend"
    screenshot(page, "plot-clicked")


def test_changing_an_axis_repaints_without_a_request(server, page, searched):
    _, search_id = searched
    open_search(page, server, search_id)
    image = page.locator(".plot-stage canvas").nth(1).screenshot()
    points = requests_to(page, rf"/searches/{search_id}/points")
    before = paints(page)
    page.select_option("#axis-x", "h100-sxm.latency_ms")
    stage = page.locator(".plot-stage")
    wait_for_paint(page, before)
    expect(stage).to_have_attribute("data-x", "h100-sxm.latency_ms")
    assert points == []  # an objective's column was already loaded
    assert page.locator(".plot-stage canvas").nth(1).screenshot() != image
    # an axis of a metric not loaded yet asks for that column only
    before = paints(page)
    page.select_option("#axis-y", "macs")
    wait_for_paint(page, before)
    assert points == [f"/searches/{search_id}/points"]
    expect(page.locator(".plot-overlay")).to_have_attribute(
        "aria-label", "Scatter of macs (MACs) against h100-sxm.latency_ms (ms), 160 candidates"
    )
    screenshot(page, "plot-axes")


def test_a_tighter_limit_dims_the_candidates_beyond_it_and_counts_them(server, page, searched):
    api, search_id = searched
    open_search(page, server, search_id)
    columns = api.get(f"/searches/{search_id}/points", params={"metric": LIMIT}).json()
    feasible = sorted(
        v for v, ok in zip(columns["metrics"][LIMIT], columns["feasible"], strict=True) if ok
    )
    limit = f"{feasible[len(feasible) // 2]:.6g}"
    beyond = sum(v > float(limit) for v in feasible)
    assert 0 < beyond < len(feasible)
    front = api.get(f"/searches/{search_id}/pareto", params={"where": f"{LIMIT}<={limit}"})
    before = paints(page)
    page.select_option("#axis-x", LIMIT)  # the dashed limit line on the x axis
    wait_for_paint(page, before)
    assert painted_pixels(page, DIMMED) == 0

    page.fill(f'input[data-metric="{LIMIT}"]', limit)
    counts = page.locator(".count-line")
    expect(counts).to_have_attribute("data-dimmed-count", str(beyond))
    expect(counts).to_have_attribute("data-feasible-count", str(len(feasible) - beyond))
    expect(counts).to_have_attribute("data-front-count", str(len(front.json()["front"])))
    expect(counts).to_contain_text(f"within these limits (of {len(feasible)} feasible)")
    assert painted_pixels(page, DIMMED) > 0
    screenshot(page, "plot-limit")

    page.click("text=Reset")
    expect(counts).to_have_attribute("data-dimmed-count", "0")


def test_the_keyboard_moves_a_cursor_between_points_and_opens_one(server, page, searched):
    api, search_id = searched
    open_search(page, server, search_id)
    cursor = page.locator(".plot-cursor-text")
    expect(cursor).to_have_attribute("aria-live", "polite")
    page.focus(".plot-overlay")
    expect(cursor).to_contain_text("(Pareto front)")  # it starts on the front
    seen = [cursor.inner_text()]
    for key in ("ArrowDown", "ArrowRight", "Shift+ArrowDown"):
        page.keyboard.press(key)
        seen.append(cursor.inner_text())
    assert len(set(seen)) >= 3, seen
    assert "top1 " in seen[-1] and "%" in seen[-1]  # values as the CLI prints them
    number = int(seen[-1].split()[1])
    screenshot(page, "plot-cursor")
    page.keyboard.press("Enter")
    expect(page.locator("#panel h2")).to_have_text(f"Candidate {number}")
    candidate = api.get(f"/searches/{search_id}/candidates/{number}").json()
    assert f"top1 {candidate['top1']:.2%}" in seen[-1]
    expect(page.locator("#panel")).to_contain_text(f"top1 (predicted){candidate['top1']:.2%}")
    screenshot(page, "plot-keyboard-panel")
