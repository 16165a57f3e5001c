"""The page on a search whose space is a user's own (defined in a YAML file since deleted):
the search's summary carries its space, so the page shows its quality and draws its archs
although GET /spaces lists presets only."""

from __future__ import annotations

import httpx

from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Store
from tests.nas.service.web import expect, needs_browser, screenshot

pytestmark = needs_browser


def test_a_search_on_a_user_space_is_shown_with_its_candidates(
    server, page, user_space_supernet, tmp_path
):
    path, space = user_space_supernet
    database = f"sqlite:///{tmp_path / 'web.db'}"  # the server's own database
    checked = check_search_config(
        {
            "name": "my-space",
            "supernet": str(path),
            "targets": {"stm32f746": {"peak_sram_kb": 320, "flash_kb": 1024}},
            "algorithm": {"population": 4, "generations": 1, "seed": 0},
            "evaluation": "supernet",
            "database": database,
        },
        "test",
    )
    search_id = launch_search(checked, Store(database), progress=False).search_id
    info = httpx.get(f"{server}/searches/{search_id}", timeout=30).json()
    assert info["space_info"]["name"] == space.name and info["space_info"]["family"]
    assert space.name not in {s["name"] for s in httpx.get(f"{server}/spaces").json()["items"]}

    page.goto(f"{server}/#/searches/{search_id}")
    expect(page.locator("#search-status")).to_have_text("completed")
    rows = page.locator(".front-table tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.locator(".front-table thead")).to_contain_text("top1")  # the family's metric
    rows.first.click()
    expect(page.locator("#panel .block").first).to_be_visible()  # the arch, drawn
    expect(page.locator("#panel")).to_contain_text("top1")
    screenshot(page, "user-space-panel")
