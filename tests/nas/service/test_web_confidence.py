"""The picked candidate's prediction intervals on the search page (Playwright, Debian's
chromium): error bars on the scatter's picked point for each plotted axis whose metric has
bounds, and `value (90%: low–high)` in the candidate panel."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import yaml

import latency_models as lm
from nas.search import launch_search
from nas.store import Store
from tests.nas.service.web import expect, needs_browser, screenshot

pytestmark = needs_browser

DEVICE = "h100-bounded"
BAR = "#b45309"  # plotpick.js's error bar colour
LIMIT = 2.0  # ms at batch 64: the tiny space's subnets take 1.1-1.8 ms by the point value


@pytest.fixture
def searched(server, search_config, tmp_path, monkeypatch):
    """A finished search whose GPU states its latency residuals (a user profile folder)."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    profile = yaml.safe_load(lm.hardware_path("h100-sxm").read_text())
    profile["name"] = DEVICE
    residuals = [-0.25, -0.15, -0.08, -0.02, 0.03, 0.1, 0.18, 0.3]
    profile["uncertainty"] = {"latency_ms": {"log_ratios": residuals, "rows": "made up"}}
    (folder / f"{DEVICE}.yaml").write_text(yaml.safe_dump(profile))
    monkeypatch.setenv(lm.hardware.USER_PROFILE_DIR_ENV, str(folder))
    config = search_config(
        targets={DEVICE: {"latency_ms": {"max": LIMIT, "confidence": 0.9}, "batch": 64}},
        objectives=[
            {"metric": "top1", "goal": "maximize"},
            {"metric": f"{DEVICE}.latency_ms", "goal": "minimize"},
        ],
        algorithm={"population": 16, "generations": 2, "seed": 1},
        database=f"sqlite:///{tmp_path / 'web.db'}",
    )
    store = Store(config.config.database)
    search_id = launch_search(config, store, progress=False).search_id
    store.dispose()
    return httpx.Client(base_url=server, timeout=30), search_id


def bar_extent(page) -> tuple[int, int]:
    """The width and height in pixels of what is painted in the bar colour on the overlay."""
    return tuple(
        page.evaluate(
            """(rgb) => { const c = document.querySelectorAll('.plot-stage canvas')[2];
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const want = [1, 3, 5].map((k) => parseInt(rgb.slice(k, k + 2), 16));
            let x0 = Infinity, x1 = -1, y0 = Infinity, y1 = -1;
            for (let i = 0; i < d.length; i += 4) {
              const off = d[i] !== want[0] || d[i + 1] !== want[1] || d[i + 2] !== want[2];
              if (!d[i + 3] || off) continue;
              const x = (i / 4) % c.width, y = Math.floor(i / 4 / c.width);
              x0 = Math.min(x0, x); x1 = Math.max(x1, x);
              y0 = Math.min(y0, y); y1 = Math.max(y1, y);
            }
            return x1 < 0 ? [0, 0] : [x1 - x0 + 1, y1 - y0 + 1]; }""",
            BAR,
        )
    )


def test_the_picked_point_shows_its_interval_as_error_bars_and_in_the_panel(server, page, searched):
    api, search_id = searched
    page.goto(f"{server}/#/searches/{search_id}")
    stage = page.locator(".plot-stage")
    expect(stage).to_have_attribute("data-painted", re.compile(r"\d+"))
    front = api.get(f"/searches/{search_id}/pareto").json()["front"]
    row = front[len(front) // 2]
    metric = f"{DEVICE}.latency_ms"
    bounds = row["bounds"][metric]
    assert row["coverage"] == 0.9 and bounds["low"] < row[metric] < bounds["high"] <= LIMIT
    overlay = page.locator(".plot-stage canvas").nth(2)
    assert bar_extent(page) == (0, 0)  # nothing picked: no bars

    page.click(f'.front-table tbody tr[data-candidate="{row["candidate"]}"]')
    expect(page.locator("#panel h2")).to_have_text(f"Candidate {row['candidate']}")
    # latency has bounds, and so has the predicted top1: a bar along each axis
    axes = stage.get_attribute("data-x"), stage.get_attribute("data-y")
    assert set(axes) == {metric, "top1"} and "top1" in row["bounds"]
    expect(overlay).to_have_attribute("data-error-bars", "x,y")
    width, height = bar_extent(page)
    assert width > 6 and height > 6  # two bars, each as long as its interval
    latency = page.locator("#panel .device-cost", has_text=DEVICE).locator("td", has_text="(90%:")
    expect(latency).to_have_text(re.compile(r"^[\d.]+ \(90%: [\d.]+–[\d.]+\) / 2$"))
    # the table's column of the limit is the bound it checks
    picked = page.locator(f'.front-table tbody tr[data-candidate="{row["candidate"]}"] td.muted')
    expect(page.locator(f'label[for="where-{metric}_high"]')).to_be_visible()
    assert float(picked.inner_text()) == pytest.approx(bounds["high"], rel=1e-3)
    screenshot(page, "confidence-error-bars")

    # a clone keeps the confidence, which the form has no field for
    page.click("#clone-button")
    page.wait_for_url("**/#/new/clone/*")
    expect(page.locator(f'input[name=device][value="{DEVICE}"]')).to_be_checked()
    page.click("#mode-yaml")
    config = json.loads(page.locator("#f-yaml").input_value())
    assert config["targets"][DEVICE]["latency_ms"] == {"max": LIMIT, "confidence": 0.9}
