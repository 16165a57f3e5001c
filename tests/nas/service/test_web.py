"""The web page at / in a real browser (Playwright, Debian's chromium) against a real server:
its ES modules all load as JavaScript; a search launched from the form runs to the end and
its page stops polling then, the plot draws the API's front, a tighter limit re-filters it as
`nas pareto --where` does, and an exported ONNX file downloaded from the candidate panel runs
in onnxruntime. Bad form values are shown beside their fields, all at once; the form offers
the quality metrics of the supernet file's model family, as GET /families names them."""

from __future__ import annotations

import itertools

import httpx
import numpy as np

from nas.config import NETWORK_METRICS
from nas.service.routes.page import STATIC_DIR
from tests.nas.service.web import (
    POLL_SECONDS,
    SEARCH_SECONDS,
    expect,
    fill_form,
    needs_browser,
    requests_to,
    screenshot,
)

pytestmark = needs_browser


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
    summaries = requests_to(page, r"/searches/\d+")  # what the search's page polls
    page.click("#launch-button")
    page.wait_for_url("**/#/searches/*")
    search_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#search-status")).to_have_text("completed", timeout=SEARCH_SECONDS * 1000)
    polls_at_the_end = len(summaries)
    assert polls_at_the_end >= 1 and set(summaries) == {f"/searches/{search_id}"}
    screenshot(page, "search")

    api = httpx.Client(base_url=server, timeout=30)
    info = api.get(f"/searches/{search_id}").json()
    assert info["status"] == "completed" and info["candidates"] == 24
    assert info["targets"]["stm32f746"]["limits"] == {"peak_sram_kb": 12, "flash_kb": 600}
    front = api.get(f"/searches/{search_id}/pareto").json()["front"]
    assert front
    counts = page.locator(".count-line")  # the scatter is a canvas: its counts are in the DOM
    expect(counts).to_have_attribute("data-front-count", str(len(front)))
    expect(page.locator(".front-table tbody tr")).to_have_count(len(front))

    metric, limit, tighter = a_tighter_limit(api, search_id, front)
    page.fill(f'input[data-metric="{metric}"]', limit)
    expect(counts).to_have_attribute("data-front-count", str(len(tighter)))
    expect(page.locator(".front-table tbody tr")).to_have_count(len(tighter))
    shown = page.locator(".front-table tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.candidate))"
    )
    assert sorted(shown) == sorted(row["candidate"] for row in tighter)

    first = tighter[0]["candidate"]
    page.click(f'.front-table tbody tr[data-candidate="{first}"]')
    expect(page.locator("#panel h2")).to_have_text(f"Candidate {first}")
    expect(page.locator("#panel .block").first).to_be_visible()
    # a device whose model cannot cost the space is named once, not given a row of its own
    uncosted = [
        name
        for name, device in api.get(f"/searches/{search_id}/candidates/{first}")
        .json()["devices"]
        .items()
        if device.get("error")
    ]
    assert uncosted  # note10's tables cover another space
    expect(page.locator("#panel .uncosted")).to_contain_text(", ".join(sorted(uncosted)))
    screenshot(page, "panel")
    export_polls = requests_to(page, r"/exports/\d+")
    page.click("#export-button")
    onnx_link = page.locator('#panel a[data-format="onnx"]')
    expect(onnx_link).to_be_visible(timeout=60_000)
    expect(page.locator("#panel a[download]", has_text="model_card.json")).to_be_visible()
    screenshot(page, "export")
    # a finished search is asked no more, nor a finished export (each summary says finished)
    exported_polls = len(export_polls)
    assert exported_polls >= 1
    page.wait_for_timeout(2500 * POLL_SECONDS)  # longer than either poll's period
    assert len(summaries) == polls_at_the_end, summaries
    assert len(export_polls) == exported_polls, export_polls
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
    page.fill("#f-stm32f746-peak_sram_kb", "-8")
    page.click("#launch-button")  # both problems at once, each beside its field
    beside = page.locator('[data-field="algorithm.generations"] .field-error')
    expect(beside).to_have_text("must be at least 1, got 0")
    limit = page.locator('[data-field="targets.stm32f746.peak_sram_kb"] .field-error')
    expect(limit).to_contain_text("a limit must be > 0")
    screenshot(page, "form-error")

    page.fill("#f-generations", "3")
    page.click("#launch-button")
    expect(beside).to_have_count(0)  # errors of the last submit only
    expect(limit).to_contain_text("a limit must be > 0")
    assert httpx.get(f"{server}/searches").json()["total"] == 0  # nothing was launched


def test_the_page_modules_load_as_javascript(server, page):
    """Every module under static/js is fetched, served as JavaScript (a module script refuses
    any other type) and runs: a failure is a pageerror, which the fixture turns into one."""
    types: dict[str, str] = {}
    page.on(
        "response",
        lambda r: types.setdefault(httpx.URL(r.url).path, r.headers.get("content-type", "")),
    )
    page.goto(f"{server}/")
    expect(page.locator("#view")).to_contain_text("No searches yet")
    modules = {p.name for p in (STATIC_DIR / "js").glob("*.js")}
    loaded = {path.rsplit("/", 1)[1]: kind for path, kind in types.items() if path.endswith(".js")}
    assert set(loaded) == modules
    for name, kind in loaded.items():
        assert kind.split(";")[0] in ("text/javascript", "application/javascript"), (name, kind)


def test_the_form_offers_the_quality_metrics_of_the_files_family(server, page):
    """A path whose file name is a family's: that family's quality metrics with their goals;
    any other path: the first family's primary metric only. The network's metrics follow."""
    families = httpx.get(f"{server}/families").json()["items"]
    page.goto(f"{server}/#/new")
    expect(page.locator(".device").first).to_be_visible()

    def offered(path: str) -> dict[str, str]:
        page.fill("#f-supernet", path)
        page.locator("#f-supernet").dispatch_event("change")
        rows = page.locator(".objective")
        return dict(
            zip(
                rows.evaluate_all("rows => rows.map(r => r.dataset.metric)"),
                rows.locator("select").evaluate_all("s => s.map(e => e.value)"),
                strict=True,
            )
        )

    network = dict.fromkeys(NETWORK_METRICS, "minimize")
    for family in families:
        assert offered(f"runs/some-run/{family['file_name']}") == {
            **family["quality_metrics"],
            **network,
        }
    primary = next(iter(families[0]["quality_metrics"].items()))
    assert offered("runs/some-run/other.pt") == {primary[0]: primary[1], **network}
