"""The web page's scatter at the size of a real search, timed in chromium (Playwright).

Prints one JSON object per figure (page figures: the median of a few loads or changes):
  page_first_paint_ms       from navigation to the search's page until the first frame with the
                            scatter painted (goal <= 1000); the canvas page marks a paint in
                            data-painted after its draw, an SVG page by a new <svg>
  page_points_requested_ms  when the first GET /points was sent, and when it was answered:
  page_points_answered_ms   most of the first paint is waiting for it
  page_front_drawn_ms       when the front was drawn and counted (an upper bound)
  page_axis_change_ms       choosing another x axis until the frame showing the new scatter
                            (goal <= 150)
  page_limit_change_ms      typing a tighter limit until the frame showing the points beyond it
                            dimmed and the counts updated (goal <= 300)
  page_limit_front_ms       the same, until the front re-filtered by the server is drawn and
                            counted (the page waits 350 ms after typing before it asks)
  page_elements             elements in the whole page with the scatter drawn (goal <= 3000)
  page_front_table_elements of which the front's table (one row per front candidate)
  page_plot_elements        of which the scatter's card
  api_front_bytes / api_front_ms
                            GET /searches/{id}/pareto with the search's own limits as `where`
                            conditions (what the page sends) and without, first and again
  api_points_bytes / api_points_ms
                            GET /searches/{id}/points of the page's first request (its axes)

    python experiments/bench_page.py [--supernet runs/mnist-supernet-quick/supernet.pt]
        [--population 1000] [--generations 100] [--workdir /tmp/bench-page] [--old-static DIR]

The stored search is a real one: a predictor-evaluated search on the quick demo supernet
(`make demo-quick` trains it, with predictor.pt beside it), for the three devices of
experiments/search_mnist.yaml, population x generations candidates (100,000 by default,
about a minute at ~3,000 candidates/s), stored in WORKDIR/page.db and reused by later runs.
With --old-static DIR (a copy of another version's nas/service/static), the same figures
are measured for that page too, on the same search, served by the same code otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from service_bench import ServeProcess, stored_search

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SUPERNET = ROOT / "runs" / "mnist-supernet-quick" / "supernet.pt"
GOALS = {
    "page_first_paint_ms": 1000,
    "page_axis_change_ms": 150,
    "page_limit_change_ms": 300,
    "page_elements": 3000,
}


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    goal = GOALS.get(name)
    extra = {"goal": goal, "met": value <= goal} if goal is not None else {}
    print(json.dumps({"name": name, "value": value, "unit": unit, **extra, **context}), flush=True)


def prepare(workdir: Path, supernet: Path, population: int, generations: int) -> int:
    """A completed predictor search of population x generations candidates in
    WORKDIR/page.db, with search_mnist.yaml's objectives and targets; returns its id
    (reused when it is already there)."""

    predictor = supernet.parent / "predictor.pt"
    for path in (supernet, predictor):
        if not path.is_file():
            raise SystemExit(
                f"{path} does not exist: `make demo-quick` trains the quick demo supernet and "
                "its predictor (or pass --supernet PATH, with predictor.pt beside it)"
            )

    def config() -> dict[str, Any]:
        raw = yaml.safe_load((ROOT / "experiments" / "search_mnist.yaml").read_text())
        raw.update(supernet=str(supernet), predictor=str(predictor), evaluation="predictor")
        raw["algorithm"].update(population=population, generations=generations)
        return {**raw, "workers": 0}

    url = f"sqlite:///{workdir / 'page.db'}"
    return stored_search(url, f"page-{population}x{generations}", config)


def time_get(url: str, params: list[tuple[str, str]]) -> tuple[float, int]:
    started = time.perf_counter()
    response = httpx.get(url, params=params, timeout=120)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, len(response.content)


def api_figures(server: ServeProcess, search_id: int) -> None:
    """The front request the page makes (the search's own limits as `where`), and the plain
    front, first (nothing cached) and again; the points request of the page's first paint."""
    info = httpx.get(f"{server.url}/searches/{search_id}", timeout=30).json()
    where = [
        ("where", f"{device}.{metric}<={limit}")
        for device, target in info["targets"].items()
        for metric, limit in (target.get("limits") or {}).items()
    ]
    url = f"{server.url}/searches/{search_id}/pareto"
    for label, params in (("with_search_limits", where), ("plain", [])):
        for attempt in ("first", "again"):
            ms, size = time_get(url, params)
            context = {"query": label, "attempt": attempt, "candidates": info["candidates"]}
            emit("api_front_ms", round(ms, 1), "ms", **context)
            emit("api_front_bytes", size, "bytes", **context)
    axes = [o["metric"] for o in info["objectives"]][:2]  # the page's default y and x
    ms, size = time_get(f"{server.url}/searches/{search_id}/points", [("metric", m) for m in axes])
    emit("api_points_ms", round(ms, 1), "ms", metrics=axes)
    emit("api_points_bytes", size, "bytes", metrics=axes)


# In the page: how many times the scatter was painted. The canvas page counts its paints in
# data-painted (set after each canvas draw); an SVG page paints by replacing its <svg>, so a
# new <svg> element seen is a paint. A frame loop notes the time of the first one.
PAINTS_JS = """() => {
  const stage = document.querySelector('.plot-stage');
  if (stage) return Number(stage.dataset.painted || 0);
  const svg = document.querySelector('svg.plot');
  if (!svg || !svg.querySelector('circle')) return 0;
  if (!svg.__seen) { svg.__seen = true; window.__svgPaints = (window.__svgPaints || 0) + 1; }
  return window.__svgPaints;
}"""
INIT_JS = f"""
window.__paints = {PAINTS_JS};
const firstPaintLoop = () => {{
  if (window.__paints() > 0) window.__firstPaint = performance.now();
  else requestAnimationFrame(firstPaintLoop);
}};
requestAnimationFrame(firstPaintLoop);
"""
# Do something to the page, then wait for the next paint and the frame that shows it.
TIMED_JS = """async ([selector, value, event]) => {
  const before = window.__paints();
  const el = document.querySelector(selector);
  const started = performance.now();
  el.value = value;
  el.dispatchEvent(new Event(event, { bubbles: true }));
  while (window.__paints() === before) {
    await new Promise((r) => requestAnimationFrame(r));
    if (performance.now() - started > 30000) return -1;
  }
  await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - started;
}"""
FRONT_COUNT_JS = """() => (document.querySelector('#front-count') || {}).textContent || ''"""


LOADS = 3  # page loads whose median is reported


def first_load(page, url: str) -> dict[str, int]:
    """Load the search's page afresh: when, from navigation, the scatter was first painted,
    the first GET /points sent and answered, and the front drawn and counted."""
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_function("() => window.__firstPaint !== undefined", timeout=60_000)
    page.wait_for_function(f"() => /^[0-9,]+$/.test(({FRONT_COUNT_JS})())", timeout=60_000)
    front = page.evaluate("performance.now()")
    points = page.evaluate(
        "(() => { const e = performance.getEntriesByType('resource')"
        ".find((e) => e.name.includes('/points')); return [e.requestStart, e.responseEnd]; })()"
    )
    return {
        "page_first_paint_ms": round(page.evaluate("window.__firstPaint")),
        "page_points_requested_ms": round(points[0]),
        "page_points_answered_ms": round(points[1]),
        "page_front_drawn_ms": round(front),
    }


def page_figures(
    server: ServeProcess,
    search_id: int,
    label: str,
    static: Path | None,
    screenshot: Path | None = None,
) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium on PATH (apt-get install chromium)")
    info = httpx.get(f"{server.url}/searches/{search_id}", timeout=30).json()
    objectives = [o["metric"] for o in info["objectives"]]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        if static is not None:  # another version of the page's files, same server
            page.route(
                "**/static/**",
                lambda route: route.fulfill(
                    path=str(static / route.request.url.split("/static/", 1)[1].split("?")[0])
                ),
            )
            page.route("**/", lambda route: route.fulfill(path=str(static / "index.html")))
        page.add_init_script(INIT_JS)
        context = {"page": label, "candidates": info["candidates"]}
        loads = [first_load(page, f"{server.url}/#/searches/{search_id}") for _ in range(LOADS)]
        for name, note in (
            ("page_first_paint_ms", "the scatter painted"),
            ("page_points_requested_ms", "the first GET /points sent"),
            ("page_points_answered_ms", "its answer received"),
            ("page_front_drawn_ms", "the front drawn and counted (an upper bound)"),
        ):
            runs = [load[name] for load in loads]
            emit(name, round(statistics.median(runs)), "ms", runs=runs, note=note, **context)
        page.wait_for_load_state("networkidle")  # the other columns load after the first paint
        emit(
            "page_elements",
            page.evaluate("document.querySelectorAll('*').length"),
            "elements",
            **context,
        )
        table = page.evaluate(
            "(document.querySelector('.front-table') || {querySelectorAll: () => []})"
            ".querySelectorAll('*').length"
        )
        emit("page_front_table_elements", table, "elements", **context)
        plot_elements = page.evaluate(
            "(document.querySelector('.plot-box')?.closest('.card') || document)"
            ".querySelectorAll('*').length"
        )
        emit("page_plot_elements", plot_elements, "elements", **context)

        changes = [objectives[2], objectives[1], objectives[2], objectives[1]]
        axis = [page.evaluate(TIMED_JS, ["#axis-x", m, "change"]) for m in changes]
        emit(
            "page_axis_change_ms",
            round(statistics.median(axis)),
            "ms",
            runs=[round(v) for v in axis],
            **context,
        )

        limit = next(
            (d, m, v)
            for d, t in info["targets"].items()
            for m, v in (t.get("limits") or {}).items()
        )
        selector = f'input[data-metric="{limit[0]}.{limit[1]}"]'
        limit_ms, front_ms = [], []
        for fraction in (0.8, 0.6, 0.9):
            before = page.evaluate(FRONT_COUNT_JS)
            limit_ms.append(
                page.evaluate(TIMED_JS, [selector, f"{limit[2] * fraction:.4g}", "input"])
            )
            started = time.perf_counter()
            with contextlib.suppress(Exception):  # the front may keep its size: then the timeout
                page.wait_for_function(
                    f"before => {{ const t = ({FRONT_COUNT_JS})();"
                    " return t !== before && /^[0-9,]+$/.test(t); }",
                    arg=before,
                    timeout=30_000,
                )
            front_ms.append((time.perf_counter() - started) * 1000 + limit_ms[-1])
        emit(
            "page_limit_change_ms",
            round(statistics.median(limit_ms)),
            "ms",
            runs=[round(v) for v in limit_ms],
            limit=f"{limit[0]}.{limit[1]}",
            **context,
        )
        emit(
            "page_limit_front_ms",
            round(statistics.median(front_ms)),
            "ms",
            runs=[round(v) for v in front_ms],
            note="includes the page's 350 ms debounce",
            **context,
        )
        if errors:
            emit("page_errors", len(errors), "errors", first=errors[0], **context)
        if screenshot is not None:  # the page as the README shows it, the limit tightened
            page.wait_for_function("!document.querySelector('.plot-area.loading')")
            page.wait_for_timeout(1000)  # the loading note fades out
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(screenshot))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--supernet",
        type=Path,
        default=DEFAULT_SUPERNET,
        help="the quick demo supernet, with predictor.pt beside it",
    )
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-page"))
    parser.add_argument(
        "--old-static",
        type=Path,
        default=None,
        help="another version's nas/service/static, timed on the same search",
    )
    parser.add_argument(
        "--screenshot", type=Path, default=None, help="save the canvas page's viewport as PNG"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    search_id = prepare(args.workdir, args.supernet.resolve(), args.population, args.generations)
    server = ServeProcess(args.workdir, "page.db", None)
    try:
        api_figures(server, search_id)
        page_figures(server, search_id, "canvas", None, args.screenshot)
        if args.old_static is not None:
            page_figures(server, search_id, "old", args.old_static.resolve())
    finally:
        server.stop()


if __name__ == "__main__":
    main()
