"""A finished search's page in a real browser: the plot says it is loading until its points
come; the front table shows one page of the front, sorted by a column header on the server
as the API sorts it, its arch ids whole and copyable; a tightened limit re-filters it from
page 1. An infeasible search that ended with no candidate says so, not "no candidates yet";
a cancelled one says that its page shows what it stored before."""

from __future__ import annotations

import re

import httpx
import pytest

from nas.search import cancel_search, launch, launch_search, resume_search
from nas.store import Store
from tests.nas.service.test_web import a_tighter_limit
from tests.nas.service.web import expect, needs_browser
from tests.nas.service.web import screenshot as save_screenshot

pytestmark = needs_browser


@pytest.fixture
def launched(server, search_config, tmp_path):
    """Runs a search in this process on the server's database; returns its id."""
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")

    def launch(**overrides) -> int:
        config = search_config(database=store.url, **overrides)
        return launch_search(config, store, progress=False).search_id

    yield launch
    store.dispose()


def screenshot(page, name: str) -> None:
    """From the top: a full-page shot of a scrolled page draws the sticky bar mid-page."""
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, name)


def shown_candidates(page) -> list[int]:
    rows = page.locator(".front-table tbody tr")
    return rows.evaluate_all("rows => rows.map(r => Number(r.dataset.candidate))")


def test_the_front_table_is_paged_and_sorted_on_the_server(server, page, launched):
    search_id = launched(algorithm={"population": 24, "generations": 4, "seed": 1})
    api = httpx.Client(base_url=server, timeout=30)
    url = f"/searches/{search_id}/pareto"
    front = api.get(url).json()["front"]
    assert len(front) > 10, f"the test needs a front of more than one page of 10: {len(front)}"

    held = []  # the first points request, held until the loading note has been seen
    points = re.compile(r".*/points\?.*")
    page.route(points, lambda route: held.append(route))
    page.goto(f"{server}/#/searches/{search_id}")
    expect(page.locator(".plot-loading")).to_be_visible()
    screenshot(page, "front-loading")
    for route in held:  # before unroute, which may hand them on by itself
        route.continue_()
    page.unroute(points)
    expect(page.locator(".plot-loading")).to_be_hidden()
    expect(page.locator(".front-table tbody tr")).to_have_count(len(front))  # one page of 50
    assert shown_candidates(page) == [row["candidate"] for row in front]

    page.select_option("#front-page-size", "10")
    expect(page.locator("#front-rows")).to_have_text(f"Rows 1–10 of {len(front)}")
    page.click("#front-next")
    expect(page.locator("#front-rows")).to_have_text(
        f"Rows 11–{min(20, len(front))} of {len(front)}"
    )
    assert shown_candidates(page) == [row["candidate"] for row in front[10:20]]

    metric = "stm32f746.peak_sram_kb"
    for order in ("asc", "desc"):  # a cost: ascending first, then the other way
        page.click(f'.front-table th button[data-sort="{metric}"]')
        header = page.locator(f'.front-table th:has(button[data-sort="{metric}"])')
        expect(header).to_have_attribute("aria-sort", f"{order}ending")
        expect(page.locator("#front-rows")).to_have_text(f"Rows 1–10 of {len(front)}")
        sorted_page = api.get(url, params={"sort": metric, "order": order, "limit": 10}).json()
        assert shown_candidates(page) == [row["candidate"] for row in sorted_page["front"]]
        values = [row[metric] for row in sorted_page["front"]]
        assert values == sorted(values, reverse=order == "desc")

    first = sorted_page["front"][0]
    arch_id = page.locator(".front-table tbody tr").first.locator(".arch-id")
    expect(arch_id).to_have_text(first["arch_id"])  # whole, and on hover
    expect(arch_id).to_have_attribute("title", first["arch_id"])
    # top1 as the CLI's table prints it
    headers = page.locator(".front-table thead th").evaluate_all(
        "t => t.map(e => e.querySelector('button')?.dataset.sort)"
    )
    top1 = page.locator(".front-table tbody tr").first.locator("td").nth(headers.index("top1"))
    expect(top1).to_have_text(f"{first['top1']:.2%}")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.locator(".front-table tbody tr").first.locator("button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == first["arch_id"]
    expect(page.locator("#panel h2")).to_have_count(0)  # copying does not open the candidate
    page.click("#front-next")
    expect(page.locator("#front-rows")).to_contain_text("Rows 11–")
    screenshot(page, "front-sorted")

    limited, value, tighter = a_tighter_limit(api, search_id, front)
    page.fill(f'input[data-metric="{limited}"]', value)
    expect(page.locator("#front-rows")).to_have_text(
        f"Rows 1–{min(10, len(tighter))} of {len(tighter)}"
    )
    where = {"where": f"{limited}<={value}", "sort": metric, "order": "desc", "limit": 10}
    assert shown_candidates(page) == [
        row["candidate"] for row in api.get(url, params=where).json()["front"]
    ]
    screenshot(page, "front-tightened")


def test_an_infeasible_search_with_no_candidate_says_so(server, page, launched):
    # no subnet of the space has peak SRAM <= 0.5 kB: the search ends before its first generation
    search_id = launched(targets={"stm32f746": {"peak_sram_kb": 0.5}})
    page.goto(f"{server}/#/searches/{search_id}")
    expect(page.locator("#search-status")).to_have_text("infeasible")
    expect(page.get_by_text("No candidates yet")).to_be_hidden()  # what it said before
    state = page.locator("#search-state")
    expect(state).to_contain_text("No feasible candidate")
    expect(state).to_contain_text("before evaluating any candidate")
    expect(page.locator(".empty-front")).to_have_text(
        "No feasible candidate: the search ended without evaluating any."
    )
    expect(page.locator(".plot-area")).to_be_hidden()  # nothing to plot
    screenshot(page, "front-infeasible")


@pytest.fixture
def cancelled(search_config, tmp_path):
    """A search cancelled after its first generation, in the database the server will open
    (made before the server starts: a running search without a driver would get a worker)."""
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    runner = launch(search_config(database=store.url), store, progress=False)
    runner.run(stop_after_generations=1)
    cancel_search(runner.search_id, store)
    resume_search(runner.search_id, store, progress=False)  # no driver: cancelled at once
    store.dispose()
    return runner.search_id


def test_a_cancelled_search_says_what_its_page_shows(cancelled, server, page):
    page.goto(f"{server}/#/searches/{cancelled}")
    expect(page.locator("#search-status")).to_have_text("cancelled")
    state = page.locator("#search-state")
    expect(state).to_contain_text("The search was cancelled")
    expect(state).to_contain_text("candidates stored before it was cancelled")
    expect(page.locator(".plot-area")).to_be_visible()  # what it stored is plotted
    expect(page.locator(".front-table tbody tr").first).to_be_visible()
    expect(page.locator(".plot-loading")).to_be_hidden()
    screenshot(page, "front-cancelled")
