"""The launch form and a search's header actions in a real browser, one user path a test:
an empty form names every required field at once, in plain words; a pasted YAML config
that is malformed, then wrong in several fields, shows every problem; a search cloned from
its page launches with the same config; the devices offered are those that can cost the
chosen space, and a ticked device opens without leaving gaps; cancel asks first, and a
cancelled search resumes from its page."""

from __future__ import annotations

import threading
import time

import httpx

from nas.search import launch_search
from nas.store import Store
from tests.nas.service.web import expect, fill_form, needs_browser, screenshot

pytestmark = needs_browser


def shot(page, name: str) -> None:
    """A screenshot from the top: a full-page one of a scrolled page draws the sticky top bar
    over its middle."""
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, name)


def open_form(page, server, path="#/new"):
    page.goto(f"{server}/{path}")
    expect(page.locator(".device").first).to_be_visible()


def test_an_empty_form_names_every_required_field_at_once(server, page):
    open_form(page, server)
    page.fill("#f-name", "")
    page.click("#launch-button")
    beside = {
        name: page.locator(f'[data-field="{name}"] > .field-error')
        for name in ("supernet", "predictor", "targets")
    }
    expect(beside["targets"]).to_have_text("name at least one device")
    expect(beside["supernet"]).to_contain_text("required: the path of a trained supernet")
    expect(beside["predictor"]).to_contain_text("needs a predictor")
    expect(page.locator("#form-error")).to_contain_text("3 problems, each shown beside its field")
    assert "Dictionary should have" not in page.locator("#launch").inner_text()
    shot(page, "form-empty")
    assert httpx.get(f"{server}/searches").json()["total"] == 0


def test_pasted_yaml_shows_every_problem(server, page, tiny_supernet, tiny_predictor):
    open_form(page, server)
    page.click("#mode-yaml")
    expect(page.locator("#f-yaml")).to_be_visible()
    expect(page.locator("#launch")).to_be_hidden()
    errors = page.locator("#yaml-error")

    page.fill("#f-yaml", "supernet: x.pt\ntargets: {stm32f746: {peak_sram_kb: 8}\n")
    page.click("#yaml-launch")
    expect(errors).to_contain_text("not valid JSON or YAML")
    expect(errors).to_contain_text("line 2")

    bad = (
        f"supernet: {tiny_supernet.path}\n"
        f"predictor: {tiny_predictor}\n"
        "algorithm: {population: 2, generations: 0}\n"
        "targets:\n"
        "  stm32f746: {peak_sram_kb: -8, sram: 3}\n"
        "  local-cpu-gan: {}\n"
        "colour: blue\n"
    )
    page.fill("#f-yaml", bad)
    page.click("#yaml-launch")
    items = errors.locator("li")
    expect(items).to_have_count(6)
    expect(errors).to_contain_text("6 problems")
    for text in (
        "algorithm.population: must be at least 4, got 2",
        "algorithm.generations: must be at least 1, got 0",
        "targets.stm32f746.peak_sram_kb: a limit must be > 0",
        "targets.stm32f746.sram: stm32f746 has no metric 'sram'",
        "targets.local-cpu-gan: local-cpu-gan cannot cost space 'mnist-mbv3'",
        "colour: unknown field",
    ):
        expect(errors).to_contain_text(text)
    shot(page, "form-yaml-errors")

    good = bad.replace("{population: 2, generations: 0}", "{population: 8, generations: 3}")
    good = good.replace("{peak_sram_kb: -8, sram: 3}", "{peak_sram_kb: 12}")
    good = good.replace("  local-cpu-gan: {}\n", "").replace("colour: blue\n", "")
    page.fill("#f-yaml", good)
    page.click("#yaml-check")
    expect(page.locator("#yaml-state")).to_have_text("The config is valid: nothing was launched.")
    expect(items).to_have_count(0)
    assert httpx.get(f"{server}/searches").json()["total"] == 0


def test_the_devices_offered_can_cost_the_space_and_open_without_gaps(server, page):
    open_form(page, server)
    expect(page.locator("#launch")).to_contain_text("the server's working folder")
    gan_only = page.locator('.device[data-name="local-cpu-gan"]')
    expect(gan_only).to_be_visible()  # no space chosen: every device
    expect(page.locator("#devices-hidden")).to_contain_text("Every device is offered: pick a space")
    page.select_option("#f-space", "mnist-mbv3")
    expect(gan_only).to_be_hidden()
    expect(page.locator("#devices-hidden")).to_contain_text(
        "Not offered, as they cannot cost mnist-mbv3: "
    )
    expect(page.locator('.device[data-name="stm32f746"]')).to_be_visible()

    page.check("input[name=device][value=stm32f746]")
    opened = page.locator('.device[data-name="stm32f746"]').bounding_box()
    grid = page.locator(".devices").bounding_box()
    assert abs(opened["width"] - grid["width"]) < 2  # spans the row: no tall empty cells
    boxes = page.locator(".device:visible").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom]; })"
    )
    rows: dict[float, float] = {}
    for top, bottom in boxes:
        rows[round(top)] = max(rows.get(round(top), 0), bottom - top)
    for top, bottom in boxes:  # boxes sharing a row are about as tall as each other
        assert rows[round(top)] - (bottom - top) < 40, (top, bottom, rows)
    shot(page, "form-devices")


def a_finished_search(server_db: str, search_config) -> int:
    checked = search_config(database=server_db)
    return launch_search(checked, Store(server_db), progress=False).search_id


def test_a_cloned_search_launches_with_the_same_config(server, page, search_config, tmp_path):
    db = f"sqlite:///{tmp_path / 'web.db'}"  # the server's database (conftest.py)
    first = a_finished_search(db, search_config)
    page.goto(f"{server}/#/searches/{first}")
    expect(page.locator("#search-status")).to_have_text("completed")
    page.click("#clone-button")
    page.wait_for_url("**/#/new/clone/*")
    expect(page.locator("h1")).to_contain_text(f"from #{first}")
    expect(page.locator("#f-population")).to_have_value("8")
    expect(page.locator("#f-stm32f746-peak_sram_kb")).to_have_value("12")
    expect(page.locator("#f-h100-sxm-batch")).to_have_value("64")
    expect(page.locator("#f-h100-sxm-precision")).to_have_value("fp16")
    shot(page, "form-clone")
    page.click("#launch-button")
    page.wait_for_url("**/#/searches/*")
    second = int(page.url.rsplit("/", 1)[1])
    assert second != first
    api = httpx.Client(base_url=server, timeout=30)
    configs = [api.get(f"/searches/{i}").json()["config"] for i in (first, second)]
    assert configs[0] == configs[1] and "database" not in configs[0]


def test_cancel_asks_first_then_a_cancelled_search_resumes(server, page, search_config, tmp_path):
    db = f"sqlite:///{tmp_path / 'web.db'}"
    checked = search_config(
        database=db, algorithm={"population": 8, "generations": 1_000_000, "seed": 0}
    )
    store = Store(db)
    outcome = {}
    driver = threading.Thread(
        target=lambda: outcome.update(done=launch_search(checked, store, progress=False))
    )
    driver.start()  # in this process: no worker to start, running within a second
    api = httpx.Client(base_url=server, timeout=30)
    deadline = time.monotonic() + 30
    while api.get("/searches").json()["total"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.goto(f"{server}/#/searches/1")
    expect(page.locator("#search-status")).to_have_text("running")

    page.click("#cancel-button")
    expect(page.locator(".confirm")).to_contain_text("Cancel search?")
    shot(page, "search-cancel-confirm")
    page.click("#cancel-no")  # keep it running
    expect(page.locator("#cancel-button")).to_be_visible()
    assert api.get("/searches/1").json()["status"] == "running"

    page.click("#cancel-button")
    page.click("#cancel-yes")
    expect(page.locator("#search-status")).to_have_text("cancelled", timeout=20_000)
    driver.join(timeout=20)
    assert outcome["done"].status == "cancelled"
    expect(page.locator("#cancel-button")).to_have_count(0)
    shot(page, "search-cancelled")

    page.click("#resume-button")  # a worker process takes it over
    expect(page.locator("#search-status")).to_have_text("running", timeout=60_000)
    assert api.get("/searches/1").json()["status"] == "running"
    shot(page, "search-resumed")


def test_a_model_based_sampler_on_a_predictor_search_is_named_beside_its_field(
    server, page, tiny_supernet, tiny_predictor
):
    fill_form(page, server, str(tiny_supernet.path), tiny_predictor)
    options = page.locator("#f-sampler option")
    expect(options).to_have_count(6)  # nsga2, nsga3, gp, motpe, auto, random
    page.select_option("#f-sampler", "gp")
    page.click("#launch-button")
    beside = page.locator('[data-field="algorithm.sampler"] > .field-error')
    expect(beside).to_contain_text("gp fits a model to every result")
    shot(page, "form-sampler")
    page.select_option("#f-evaluation", "supernet")
    page.fill("#f-predictor", "")
    page.fill("#f-generations", "1")
    page.click("#launch-button")
    expect(page.locator("#search-status")).to_be_visible(timeout=60_000)  # launched
