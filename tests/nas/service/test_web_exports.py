"""Exports in the browser: the candidate panel's export dialog offers the search family's
formats (GET /searches/ID/export-formats), shows a running export's phase and time, and its
chosen file downloads and loads; the Exports page lists every export, a `nas export` one
beside one made from the page, and the CLI's files download from it. Under `nas serve
--private-reads`, "Front as CSV" and export files download with the token in the
Authorization header (fetched into a Blob), never in a URL."""

from __future__ import annotations

import hashlib

import httpx
import torch
from typer.testing import CliRunner

from nas.cli import app as cli
from nas.pareto import pareto_front
from nas.search import launch_search
from nas.store import Store
from tests.nas.service.conftest import PRIVATE_TOKEN
from tests.nas.service.web import expect, needs_browser, screenshot

pytestmark = needs_browser


def searched_with_a_cli_export(search_config, tmp_path):
    """A completed tiny search in the servers' database (tmp_path/web.db), its front's first
    candidate, and that candidate exported by `nas export` (a state_dict) into tmp_path/cli."""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    config = search_config(database=url, algorithm={"population": 8, "generations": 2, "seed": 2})
    store = Store(url)
    search_id = launch_search(config, store, progress=False).search_id
    candidate = pareto_front(store, search_id).front[0].trial
    args = ["export", str(search_id), str(candidate), "--format", "state_dict"]
    ran = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "cli"), "--db", url])
    assert ran.exit_code == 0, ran.output
    return search_id, candidate


def save(download, path):
    assert download.failure() is None, download.failure()
    download.save_as(path)
    return path


def test_an_export_with_a_chosen_format_downloads_and_the_exports_page_lists_both_doors(
    server, page, search_config, tmp_path
):
    search_id, candidate = searched_with_a_cli_export(search_config, tmp_path)
    page.goto(f"{server}/#/searches/{search_id}")
    page.click(f'.front-table tbody tr[data-candidate="{candidate}"]')
    formats = page.locator('#panel input[name="export-format"]')
    expect(formats.first).to_be_visible()
    offered = httpx.get(f"{server}/searches/{search_id}/export-formats").json()["formats"]
    assert formats.evaluate_all("boxes => boxes.map(b => b.value)") == [f["name"] for f in offered]
    page.uncheck('#panel input[value="onnx"]')
    page.check('#panel input[value="torchscript"]')
    screenshot(page, "export-formats")
    page.click("#export-button")
    # while it runs: its phase and time, polled from GET /exports/ID
    expect(page.locator("#panel .export-phase")).to_contain_text("Export #2: ")
    # a worker's phase, unless the export ends between two polls (then nothing to show)
    page.wait_for_function(
        """() => /loading|writing/.test(document.querySelector("#panel .export-phase")?.textContent)
            || /completed/.test(document.querySelector("#panel .export-status").textContent)""",
        timeout=60_000,
    )
    if page.locator("#panel .export-phase").count():
        screenshot(page, "export-running")
    link = page.locator('#panel a[data-format="torchscript"]')
    expect(link).to_be_visible(timeout=60_000)
    expect(page.locator("#panel .export-status")).to_contain_text("completed in")
    screenshot(page, "export-done")
    with page.expect_download() as download:
        link.click()
    model = torch.jit.load(str(save(download.value, tmp_path / "model.pt")))
    shape = httpx.get(f"{server}/exports/2").json()["card"]["input"]["shape"]
    assert model(torch.rand(2, *shape[1:])).shape[0] == 2

    name = page.request.get(f"{server}/searches/{search_id}").json()["name"]
    page.click('nav a[data-nav="exports"]')
    rows = page.locator("table.exports tbody tr")
    expect(rows).to_have_count(2)
    page_row, cli_row = page.locator('tr[data-export="2"]'), page.locator('tr[data-export="1"]')
    expect(page_row).to_contain_text("torchscript")
    expect(cli_row).to_contain_text("state_dict")
    for row in (page_row, cli_row):
        expect(row.locator(".status")).to_have_text("completed")
        expect(row.locator(f'a[href="#/searches/{search_id}"]').first).to_be_visible()
        # the search by the name it was launched with, and its number
        expect(row.locator(".export-search")).to_have_text(f"{name} #{search_id}")
    screenshot(page, "exports-page")
    with page.expect_download() as download:
        cli_row.locator('a[data-format="state_dict"]').click()
    state = torch.load(save(download.value, tmp_path / "cli.pt"), weights_only=True)
    assert state["arch"] and state["state_dict"]
    cli_row.locator(".candidate-link").click()  # the candidate's panel, over the page
    expect(page.locator("#panel h2")).to_have_text(f"Candidate {candidate}")


def test_downloads_carry_the_token_under_private_reads(
    private_server, page, search_config, tmp_path
):
    search_id, _ = searched_with_a_cli_export(search_config, tmp_path)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(f"{private_server}/#/searches/{search_id}")
    expect(page.locator("#errors")).to_contain_text("401")  # no token given yet
    page.fill("#token", PRIVATE_TOKEN)
    page.press("#token", "Enter")  # a change: kept in this browser
    page.reload()
    expect(page.locator("#search-status")).to_have_text("completed")

    with page.expect_download() as download:
        page.click("text=Front as CSV")
    got = save(download.value, tmp_path / "front.csv").read_bytes()
    auth = {"Authorization": f"Bearer {PRIVATE_TOKEN}"}
    csv = httpx.get(f"{private_server}/searches/{search_id}/pareto?format=csv", headers=auth)
    assert csv.status_code == 200 and got == csv.content
    assert download.value.suggested_filename == f"search-{search_id}-front.csv"

    page.goto(f"{private_server}/#/exports")
    link = page.locator('tr[data-export="1"] a[data-format="state_dict"]')
    with page.expect_download() as download:
        link.click()
    data = save(download.value, tmp_path / "cli.pt").read_bytes()
    assert (
        hashlib.sha256(data).hexdigest()
        == hashlib.sha256((tmp_path / "cli" / "model.state_dict.pt").read_bytes()).hexdigest()
    )
    screenshot(page, "exports-private")
    assert not [url for url in urls if PRIVATE_TOKEN in url]  # never in a URL


def test_the_exports_page_pages_and_shows_why_an_export_failed(
    server, page, search_config, tmp_path
):
    """30 exports (recorded as failed jobs, straight into SQL: no worker needed to list
    them): the page shows the newest 25, then the other 5, each failure with its message."""
    from sqlalchemy import select

    from nas.store import Candidate, Export

    url = f"sqlite:///{tmp_path / 'web.db'}"
    config = search_config(database=url, algorithm={"population": 8, "generations": 1, "seed": 2})
    store = Store(url)
    search_id = launch_search(config, store, progress=False).search_id
    with store.session() as s:
        candidate = s.scalars(select(Candidate).where(Candidate.search_id == search_id)).first()
        for number in range(30):
            s.add(
                Export(
                    search_id=search_id,
                    candidate_id=candidate.id,
                    formats=["onnx"],
                    out_dir=str(tmp_path / "exports" / str(number)),
                    card={},
                    status="failed",
                    message=f"failure number {number}",
                )
            )
    page.goto(f"{server}/#/exports")
    rows = page.locator("table.exports tbody tr")
    expect(rows).to_have_count(25)
    expect(page.locator(".pager")).to_contain_text("1–25 of 30")
    expect(rows.first).to_contain_text("failure number 29")  # newest first
    screenshot(page, "exports-paged")
    page.click(".pager button:has-text('Older')")
    expect(rows).to_have_count(5)
    expect(page.locator(".pager")).to_contain_text("26–30 of 30")
    expect(rows.last).to_contain_text("failure number 0")
    expect(page.locator(".pager button:has-text('Older')")).to_be_disabled()
