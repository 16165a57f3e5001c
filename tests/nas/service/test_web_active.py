"""Measured and predicted quality on the page, in a real browser: the launch form offers
`evaluation: active` with its budget and rounds, names their problems beside them, launches
one and clones it back; the scatter draws measured points filled and predicted ones as
rings, its legend names the kinds present, and the panel says which a candidate is."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from nas.search import launch_search
from nas.store import Store
from tests.nas.service.web import expect, needs_browser, red_point, screenshot

pytestmark = needs_browser

# two objectives: the scatter has no colour scale, so the front is drawn in plot.js's red
TWO_OBJECTIVES = [
    {"metric": "top1", "goal": "maximize"},
    {"metric": "stm32f746.latency_ms", "goal": "minimize"},
]
SMALL = {"population": 8, "generations": 2, "seed": 0}  # a front of a few, each measured ~0.5 s


def shot(page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # a full-page shot of a scrolled page: the top bar
    screenshot(page, name)


def beside(page, field: str):
    return page.locator(f'[data-field="{field}"] > .field-error')


def test_the_form_launches_an_active_search_with_its_budget_and_clones_it(
    server, page, tiny_supernet
):
    page.goto(f"{server}/#/new")
    expect(page.locator(".device").first).to_be_visible()
    budget = page.locator("#f-budget")
    expect(budget).to_be_hidden()  # the fields of `active` only with it
    expect(page.locator("#f-evaluation option")).to_have_text(
        ["predictor", "supernet", "predictor+verify", "active"]
    )
    page.fill("#f-supernet", str(tiny_supernet.path))
    page.fill("#f-predictor", "runs/elsewhere/predictor.pt")  # an active search fits its own
    page.select_option("#f-evaluation", "active")
    expect(budget).to_be_visible()
    expect(page.locator("#f-active-initial")).to_be_visible()
    expect(page.locator("#f-active-batch")).to_be_visible()
    expect(page.locator("#f-active-halving")).to_be_visible()
    expect(page.locator("#f-predictor")).to_be_hidden()
    page.check("input[name=device][value=stm32f746]")
    page.fill("#f-stm32f746-peak_sram_kb", "12")
    page.fill("#f-population", "8")

    page.click("#launch-button")  # no budget
    expect(beside(page, "budget")).to_contain_text("required with `evaluation: active`")
    page.fill("#f-budget", "10")
    page.fill("#f-active-initial", "50")
    page.click("#launch-button")
    expect(beside(page, "budget")).to_have_text(re.compile(r"must be at least 30 .*got 10"))
    expect(beside(page, "active.initial")).to_contain_text("must be less than the budget 10")
    expect(page.locator("#form-error")).to_contain_text("2 problems, each shown beside its field")
    expect(page.locator("#algorithm-note")).to_contain_text("the budget, in rounds")
    shot(page, "active-form-problems")
    page.fill("#f-active-batch", "0")
    page.fill("#f-active-halving", "2")
    page.click("#launch-button")
    expect(beside(page, "active.batch")).to_have_text("must be at least 1, got 0")
    expect(beside(page, "active.halving")).to_contain_text("less than 1")
    assert httpx.get(f"{server}/searches").json()["total"] == 0

    page.fill("#f-budget", "30")
    page.fill("#f-active-initial", "20")
    page.fill("#f-active-batch", "5")
    page.fill("#f-active-halving", "0.5")
    page.click("#launch-button")
    page.wait_for_url("**/#/searches/*")
    search_id = int(page.url.rsplit("/", 1)[1])
    info = httpx.get(f"{server}/searches/{search_id}").json()
    config = info["config"]
    assert config["evaluation"] == "active" and config["budget"] == 30
    assert config["active"] == {"initial": 20, "batch": 5, "halving": 0.5}
    assert config["predictor"] is None
    assert info["generations"].endswith("/3")  # 20, then 5 and 5: its rounds
    expect(page.locator("#search-head")).to_contain_text("active")

    page.goto(f"{server}/#/new/clone/{search_id}")
    expect(page.locator("h1")).to_contain_text(f"from #{search_id}")
    expect(page.locator("#f-evaluation")).to_have_value("active")
    expect(budget).to_have_value("30")
    expect(page.locator("#f-active-initial")).to_have_value("20")
    expect(page.locator("#f-active-batch")).to_have_value("5")
    expect(page.locator("#f-active-halving")).to_have_value("0.5")
    expect(page.locator("#f-predictor")).to_be_hidden()
    shot(page, "active-form-clone")
    page.click("#mode-yaml")  # the form's config, as the launch would send it
    cloned = json.loads(page.locator("#f-yaml").input_value())
    assert cloned["budget"] == 30
    assert cloned["active"] == {"initial": 20, "batch": 5, "halving": 0.5}
    assert "predictor" not in cloned
    page.fill("#f-yaml", "")
    page.click("#mode-form")
    page.select_option("#f-evaluation", "predictor")  # its fields go, and leave the config
    expect(budget).to_be_hidden()
    page.click("#mode-yaml")
    cloned = json.loads(page.locator("#f-yaml").input_value())
    assert "budget" not in cloned and "active" not in cloned


# Each blob of the front's red on the points canvas, as [filled, hollow]: a point drawn
# filled has red at its centre, a ring has not. Red-ish pixels (antialiased edges too) are
# joined 8-connected, so a ring is one blob.
FRONT_BLOBS_JS = """() => {
  const c = document.querySelectorAll('.plot-stage canvas')[1];
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, w = c.width;
  const red = (k) => d[4 * k + 3] > 0 && d[4 * k] > 170 && d[4 * k + 1] < 130 && d[4 * k + 2] < 130;
  const exact = (k) => d[4 * k] === 0xdc && d[4 * k + 1] === 0x26 && d[4 * k + 2] === 0x26;
  const seen = new Uint8Array(w * c.height);
  let filled = 0, hollow = 0;
  for (let k = 0; k < w * c.height; k++) {
    if (seen[k] || !red(k)) continue;
    const stack = [k]; seen[k] = 1;
    let x0 = w, x1 = 0, y0 = c.height, y1 = 0;
    while (stack.length) {
      const q = stack.pop(), x = q % w, y = (q - x) / w;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const n = q + dy * w + dx;
        const inside = x + dx >= 0 && x + dx < w && n >= 0 && n < seen.length;
        if (inside && !seen[n] && red(n)) { seen[n] = 1; stack.push(n); }
      }
    }
    if (x1 - x0 > 16 || y1 - y0 > 16 || x1 - x0 < 6) continue; // overlapping points, or a sliver
    const centre = Math.round((y0 + y1) / 2) * w + Math.round((x0 + x1) / 2);
    if (exact(centre)) filled++; else hollow++;
  }
  return [filled, hollow];
}"""


@pytest.fixture
def two_searches(server, search_config, tmp_path):
    """A predictor+verify search (its front measured, the rest predicted) and a predictor
    search, 16 candidates each, in the server's database: the API client and their ids."""
    db = f"sqlite:///{tmp_path / 'web.db'}"  # the server's (conftest.py)
    store = Store(db)
    ids = [
        launch_search(
            search_config(evaluation=e, objectives=TWO_OBJECTIVES, algorithm=SMALL, database=db),
            store,
            progress=False,
        ).search_id
        for e in ("predictor+verify", "predictor")
    ]
    store.dispose()
    return httpx.Client(base_url=server, timeout=30), *ids


def open_plain(page, server, search_id):
    """The search's page, its scatter painted with the front counted, without a colour scale."""
    page.goto(f"{server}/#/searches/{search_id}")
    counts = page.locator(".count-line")
    expect(counts).to_have_attribute("data-front-count", re.compile(r"\d+"))
    page.wait_for_load_state("networkidle")
    expect(page.locator("#axis-colour")).to_have_value("")


def test_the_scatter_and_panel_tell_measured_from_predicted(server, page, two_searches):
    api, verified_id, predicted_id = two_searches
    points = api.get(f"/searches/{verified_id}/points").json()
    measured = len(points["measured"])
    assert 0 < measured < len(points["trial"])
    open_plain(page, server, verified_id)
    legend = page.locator(".plot-legend")
    expect(legend).to_contain_text(f"quality measured on the supernet ({measured})")
    expect(legend).to_contain_text(f"quality predicted ({len(points['trial']) - measured})")
    expect(page.locator(".count-line")).to_have_attribute("data-measured-count", str(measured))
    filled, hollow = page.evaluate(FRONT_BLOBS_JS)
    assert filled >= 1 and hollow == 0, (filled, hollow)  # the verified front: all measured
    x, y = red_point(page)
    page.mouse.move(x, y + 3)
    expect(page.locator("#tooltip")).to_contain_text("Pareto front · quality measured")
    page.mouse.click(x, y + 3)
    number = int(page.locator("#panel h2").inner_text().split()[-1])
    candidate = api.get(f"/searches/{verified_id}/candidates/{number}").json()
    panel = page.locator("#panel")
    expect(panel.locator("#quality-tag")).to_have_text("quality measured on the supernet")
    expect(panel).to_contain_text(f"top1 (predicted){candidate['top1']:.2%}")
    expect(panel).to_contain_text(re.compile(r"top1 measured\d+\.\d\d%"))
    shown = re.search(r"top1 measured(\d+\.\d\d)%", panel.text_content()).group(1)
    assert float(shown) == pytest.approx(100 * candidate["measured"]["top1"], abs=0.006)
    screenshot(page, "scatter-verified")

    open_plain(page, server, predicted_id)  # nothing measured: one legend entry, rings
    expect(legend).to_contain_text("quality predicted (16)")
    expect(legend).not_to_contain_text("quality measured")
    filled, hollow = page.evaluate(FRONT_BLOBS_JS)
    assert filled == 0 and hollow >= 1, (filled, hollow)
    page.focus(".plot-overlay")  # the keyboard cursor starts on the front
    expect(page.locator(".plot-cursor-text")).to_contain_text("; quality predicted.")
    page.keyboard.press("Enter")
    expect(panel.locator("#quality-tag")).to_have_text("quality predicted")
    expect(panel).to_contain_text("top1 measurednot measured")
    screenshot(page, "scatter-predicted")
