"""The HTTP API: the same validation, fronts and errors as the CLI; searches in workers.

The tests that touch the database run on SQLite and, with $NAS_TEST_POSTGRES_URL, on
PostgreSQL too (`@both_backends`); the others on SQLite only. Real server processes killed
and restarted are in test_service_restart.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.requests import Request

from nas import core
from nas.commands.serve import _is_loopback
from nas.search import launch, launch_search
from nas.service.app import MAX_BODY_BYTES, create_app
from nas.service.http import RequestError, require_token
from nas.store import Candidate, Search, Store, lease
from tests.conftest import needs_postgres

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# a test marked so runs once per backend: it overrides the `backend` fixture below
both_backends = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=needs_postgres)]
)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def database(backend, tmp_path, request) -> str:
    """A new database of the backend: a SQLite file in tmp_path, or a PostgreSQL database
    (set up before the server, so dropped after its workers are stopped)."""
    if backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.fixture
def service(search_config, database, tmp_path):
    """A client of a server on a new database, a valid search config as JSON, the app."""
    config = search_config(database=database)
    raw = config.config.model_dump(mode="json")
    store = Store(config.config.database)
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    try:
        with TestClient(app) as client:
            yield client, raw, app
    finally:  # no worker outlives its test (nor writes to a database being dropped)
        app.state.jobs.stop(terminate_workers=True)
        store.dispose()


@pytest.fixture
def searched(service, search_config, database):
    """The service, with a completed search of 8 x 3 candidates recorded (in this process,
    no worker): its id and its store."""
    client, _, app = service
    config = search_config(database=database)
    store = Store(database)
    search_id = launch_search(config, store, progress=False).search_id
    yield client, app, store, search_id
    store.dispose()


def wait_until_done(client: TestClient, search_id: int, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = client.get(f"/searches/{search_id}").json()
        if info["status"] not in ("running", "cancelling"):
            return info
        time.sleep(0.3)
    raise AssertionError(f"search {search_id} still {info['status']} after {seconds} s")


def candidate_rows(store: Store, search_id: int) -> list[int]:
    with store.session() as s:
        return list(
            s.scalars(select(Candidate.trial).where(Candidate.search_id == search_id)).all()
        )


# ----- searches through the API ---------------------------------------------------------------


@both_backends
def test_a_search_posted_runs_in_a_worker_and_its_front_is_the_cli_front(service):
    client, raw, app = service
    created = client.post("/searches", content=json.dumps(raw), headers=AUTH)
    assert created.status_code == 201, created.text
    search_id = created.json()["id"]
    assert app.state.jobs.worker("search", search_id).pid  # not run in the handler
    info = wait_until_done(client, search_id)
    assert info["status"] == "completed" and info["candidates"] == 24
    front = client.get(f"/searches/{search_id}/pareto").json()
    expected = core.query_front(search_id, db=raw["database"])
    assert [c["candidate"] for c in front["front"]] == [c.trial for c in expected.front]
    where = client.get(
        f"/searches/{search_id}/pareto", params={"where": "stm32f746.flash_kb<=500"}
    ).json()
    assert len(where["front"]) == len(
        core.query_front(search_id, where=["stm32f746.flash_kb<=500"], db=raw["database"]).front
    )
    csv = client.get(f"/searches/{search_id}/pareto", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("candidate")
    page = client.get(f"/searches/{search_id}/candidates", params={"limit": 5}).json()
    assert page["total"] == 24 and len(page["items"]) == 5
    one = client.get(f"/searches/{search_id}/candidates/{page['items'][0]['candidate']}").json()
    assert "stm32f746.peak_sram_kb" in one
    listed = client.get("/searches").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == search_id
    png = client.get(f"/searches/{search_id}/pareto.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    with client.stream("GET", f"/searches/{search_id}/events") as stream:
        text = "".join(stream.iter_text())
    end = json.loads(text.rstrip().rpartition("data: ")[2])
    assert "event: progress" in text and end["status"] == "completed" and "generations" in end


def _ray_children(pid: int) -> list[str]:
    """The names of the Ray processes (raylet, gcs_server, ...) whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        parent = int(rest.split()[1])
        if parent == pid and any(w in name for w in ("raylet", "gcs_server", "ray::")):
            found.append(name)
    return found


def test_a_search_with_ray_workers_is_recorded_without_ray_in_the_server(service, monkeypatch):
    """The door records the search (core.record) and leaves the evaluators to the worker:
    the server neither calls ray.init nor gets Ray processes of its own."""
    import ray

    client, raw, app = service
    calls: list[object] = []

    def no_ray(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("ray.init called in the server")

    monkeypatch.setattr(ray, "init", no_ray)
    spawned: list[tuple] = []  # the worker is not started: it would start Ray, as it should
    monkeypatch.setattr(app.state.jobs, "_spawn", lambda job, args: spawned.append(job))
    created = client.post("/searches", json={**raw, "workers": 2}, headers=AUTH)
    assert created.status_code == 201, created.text
    search_id = created.json()["id"]
    assert not calls and not ray.is_initialized() and not _ray_children(os.getpid())
    assert spawned == [("search", search_id)]  # a worker of its own runs it
    with Store(raw["database"]).session() as s:
        row = s.get(Search, search_id)
        assert row.status == "running" and row.config["workers"] == 2
        assert lease.holder(row) is None  # leased to nobody until the worker takes it


def test_events_follow_a_running_search(service):
    client, raw, _ = service
    raw = {**raw, "algorithm": {**raw["algorithm"], "generations": 6}}
    search_id = client.post("/searches", content=json.dumps(raw), headers=AUTH).json()["id"]
    with client.stream("GET", f"/searches/{search_id}/events", params={"poll": 0.1}) as stream:
        events = [
            json.loads(line[len("data: ") :])
            for line in stream.iter_lines()
            if line.startswith("data: ")
        ]
    progress = [e["generations"] for e in events[:-1]]
    assert progress[-1] == "6/6" and len(progress) >= 2  # one per change it saw
    assert events[-1] == {"status": "completed", "generations": "6/6"}


def _events(client: TestClient, search_id: int) -> list[tuple[str, dict]]:
    with client.stream("GET", f"/searches/{search_id}/events", params={"poll": 0.05}) as stream:
        blocks = "\n".join(stream.iter_lines()).strip().split("\n\n")
    events = []
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_events_coalesce_generations_and_end_naming_how_far_the_search_got(searched):
    client, _, _, search_id = searched
    events = _events(client, search_id)
    assert [name for name, _ in events] == ["progress", "end"]  # a finished search: at once
    progress = [int(data["generations"].split("/")[0]) for name, data in events[:-1]]
    assert progress == sorted(progress)  # never back: a client sees what it skipped
    info = client.get(f"/searches/{search_id}").json()
    assert events[-1][1] == {"status": "completed", "generations": info["generations"]}


@both_backends
def test_cancel_stops_a_running_worker_after_its_generation(service):
    client, raw, app = service
    raw = {**raw, "algorithm": {**raw["algorithm"], "generations": 300}}  # far from done
    search_id = client.post("/searches", content=json.dumps(raw), headers=AUTH).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/searches/{search_id}").json()["generations"].startswith("0/"):
        assert time.monotonic() < deadline, "no generation stored in 60 s"
        time.sleep(0.1)
    wrong = {"Authorization": "Bearer nope"}
    assert client.post(f"/searches/{search_id}/cancel", headers=wrong).status_code == 401
    assert client.get(f"/searches/{search_id}").json()["status"] == "running"  # untouched
    cancelled = client.post(f"/searches/{search_id}/cancel", headers=AUTH)
    assert cancelled.status_code == 200
    assert cancelled.json() == {"id": search_id, "status": "cancelling"}
    info = wait_until_done(client, search_id)
    assert info["status"] == "cancelled"
    done = int(info["generations"].split("/")[0])
    assert 1 <= done < 300 and info["candidates"] == 8 * done
    assert app.state.jobs.worker("search", search_id).wait(timeout=30) == 0
    twice = client.post(f"/searches/{search_id}/cancel", headers=AUTH)
    assert twice.status_code == 409 and "already cancelled" in twice.json()["detail"]
    resumed = client.post(f"/searches/{search_id}/resume", headers=AUTH)  # where it stopped
    assert resumed.json() == {"id": search_id, "status": "running"}


@both_backends
def test_resume_gives_a_search_whose_driver_died_a_worker(service, search_config, database):
    client, _, app = service
    config = search_config(database=database)
    store = Store(database)
    runner = launch(config, store, progress=False)
    runner.run(stop_after_generations=1)  # a driver that stopped after one generation
    lease.release(store, Search, runner.search_id, runner.driver)  # ... and then died
    assert client.post(f"/searches/{runner.search_id}/resume").status_code == 401
    resumed = client.post(f"/searches/{runner.search_id}/resume", headers=AUTH)
    assert resumed.status_code == 200
    assert resumed.json() == {"id": runner.search_id, "status": "running"}
    assert app.state.jobs.worker("search", runner.search_id).pid
    info = wait_until_done(client, runner.search_id)
    assert info["status"] == "completed" and info["candidates"] == 24
    assert sorted(candidate_rows(store, runner.search_id)) == list(range(24))
    again = client.post(f"/searches/{runner.search_id}/resume", headers=AUTH)
    assert again.status_code == 409 and "already completed" in again.json()["detail"]
    store.dispose()


@both_backends
def test_a_restarted_server_resumes_what_was_running(search_config, database, tmp_path):
    config = search_config(database=database, algorithm={"population": 8, "generations": 3})
    store = Store(config.config.database)
    runner = launch(config, store, progress=False)
    runner.run(stop_after_generations=1)  # a driver that stopped after one generation
    lease.release(store, Search, runner.search_id, runner.driver)  # ... and then died
    app = create_app(store, tmp_path / "service", TOKEN)
    try:
        with TestClient(app) as client:  # startup supervises: the search gets a worker
            info = wait_until_done(client, runner.search_id)
    finally:
        app.state.jobs.stop(terminate_workers=True)
    assert info["status"] == "completed" and info["candidates"] == 24
    store.dispose()


# ----- reading a search's candidates ----------------------------------------------------------


@both_backends
def test_candidates_page_through_every_candidate_once(searched):
    client, _, store, search_id = searched
    url = f"/searches/{search_id}/candidates"
    seen = []
    for offset in range(0, 30, 7):
        page = client.get(url, params={"offset": offset, "limit": 7}).json()
        assert page["total"] == 24 and page["offset"] == offset
        seen += [c["candidate"] for c in page["items"]]
    assert seen == sorted(candidate_rows(store, search_id)) == list(range(24))
    past = client.get(url, params={"offset": 1000}).json()
    assert past == {"items": [], "total": 24, "offset": 1000}
    feasible = client.get(url, params={"feasible": True}).json()
    assert feasible["total"] == client.get(f"/searches/{search_id}").json()["feasible"]
    assert all(c["feasible"] for c in feasible["items"])
    every = client.get(url, params={"limit": 1000}).json()["items"]
    cut = sorted(c["stm32f746.peak_sram_kb"] for c in every)[len(every) // 2]
    where = {"where": f"peak_sram_kb<={cut}", "target": "stm32f746", "limit": 5}
    filtered = client.get(url, params=where).json()
    expected = [c["candidate"] for c in every if c["stm32f746.peak_sram_kb"] <= cut]
    assert filtered["total"] == len(expected) and 0 < len(expected) < 24
    assert [c["candidate"] for c in filtered["items"]] == expected[:5]
    bad = client.get(url, params={"where": "joules<1"})
    assert bad.status_code == 422 and "joules" in bad.json()["detail"]
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"limit": "ten"}, "limit"),
        ({"feasible": "maybe"}, "feasible"),
    ]:
        response = client.get(url, params=params)
        assert response.status_code == 422, params
        assert response.json()["fields"] == [field] and field in response.json()["detail"]
    assert client.get("/searches", params={"limit": 501}).status_code == 422


# ----- errors -----------------------------------------------------------------------------------


@both_backends
def test_yaml_bodies_and_validation_errors_name_the_field(service):
    client, raw, _ = service
    bad = {**raw, "algorithm": {"population": 2}}
    response = client.post("/searches", content=yaml.safe_dump(bad), headers=AUTH)
    assert response.status_code == 422 and "algorithm.population" in response.json()["detail"]
    unknown = client.post("/searches", json={**raw, "populaton": 8}, headers=AUTH)
    assert unknown.status_code == 422 and "populaton" in unknown.json()["detail"]
    assert client.get("/searches").json()["total"] == 0  # nothing was recorded


def test_malformed_and_non_mapping_bodies_are_400_naming_the_problem(service):
    client, _, _ = service
    malformed = client.post("/searches", content="name: [unclosed", headers=AUTH)
    detail = malformed.json()["detail"]
    assert malformed.status_code == 400 and "not valid JSON or YAML" in detail
    assert "line 1" in detail and "expected ',' or ']'" in detail  # where, and what
    tabs = client.post("/searches", content="name: a\n\tsupernet: b", headers=AUTH)
    assert tabs.status_code == 400 and "line 2" in tabs.json()["detail"]
    binary = client.post("/searches", content=b"\xff\xfe\x00name", headers=AUTH)
    assert binary.status_code == 400 and "utf-8" in binary.json()["detail"]
    for body in ["[1, 2]", "just a string", "42", "null", "", "   \n"]:
        response = client.post("/searches", content=body, headers=AUTH)
        assert response.status_code == 400, body
        assert "must be a search config (a JSON or YAML mapping)" in response.json()["detail"]
    assert client.get("/searches").json()["total"] == 0


def test_a_yaml_alias_bomb_gets_a_short_error(service):
    client, raw, _ = service
    levels = ["&a0 [" + ", ".join(["xxxxxxxx"] * 10) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    bogus = "bogus: [" + ", ".join(levels) + "]\n"  # one field the config does not have
    body = yaml.safe_dump(raw) + bogus
    assert len(bogus) < 500 and len(yaml.safe_load(body)["bogus"][-1]) == 10
    response = client.post("/searches", content=body, headers=AUTH)
    assert response.status_code in (400, 422)
    assert len(response.content) < 64_000, f"{len(response.content)} bytes of error"


def test_deeply_nested_bodies_are_a_400_not_a_server_error(service):
    client, _, _ = service
    deep_yaml = "- " * 50_000 + "x"  # lists within lists, block style
    deep_json = ["[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000]
    with TestClient(client.app, raise_server_exceptions=False) as raw_client:
        # a config is JSON or YAML; an export's options are JSON
        for url, bodies in [
            ("/searches", [*deep_json, deep_yaml]),
            ("/searches/1/candidates/0/export", deep_json),
        ]:
            for body in bodies:
                response = raw_client.post(url, content=body, headers=AUTH)
                assert response.status_code == 400, (url, body[:20], response.text[:200])
                assert response.json()["error"] == "RequestError"
                assert "nested too deeply" in response.json()["detail"]
    assert client.get("/searches").json()["total"] == 0


HUGE = str(2**63)  # one past the largest id SQL stores


def test_integer_parameters_out_of_range_are_a_422_naming_them(searched):
    client, _, _, search_id = searched
    url = f"/searches/{search_id}"
    attempts = [
        ("GET", "/searches/99999999999999999999", {}, "search_id"),
        ("GET", f"/searches/{HUGE}", {}, "search_id"),
        ("GET", f"/searches/{HUGE}/pareto", {}, "search_id"),
        ("GET", f"/searches/{HUGE}/pareto.png", {}, "search_id"),
        ("GET", f"/searches/{HUGE}/events", {}, "search_id"),
        ("GET", f"/searches/{HUGE}/points", {}, "search_id"),
        ("GET", f"/searches/{HUGE}/candidates", {}, "search_id"),
        ("GET", f"{url}/candidates", {"offset": HUGE}, "offset"),
        ("GET", f"{url}/candidates/{HUGE}", {}, "number"),
        ("GET", "/searches", {"offset": HUGE}, "offset"),
        ("GET", "/exports", {"offset": HUGE}, "offset"),
        ("GET", "/exports", {"search": HUGE}, "search"),
        ("GET", f"/exports/{HUGE}", {}, "export_id"),
        ("GET", f"/exports/{HUGE}/files/model.onnx", {}, "export_id"),
        ("POST", f"/searches/{HUGE}/cancel", {}, "search_id"),
        ("POST", f"/searches/{HUGE}/resume", {}, "search_id"),
        ("POST", f"/searches/{HUGE}/candidates/0/export", {}, "search_id"),
        ("POST", f"{url}/candidates/{HUGE}/export", {}, "number"),
    ]
    with TestClient(client.app, raise_server_exceptions=False) as raw_client:
        for method, path, params, field in attempts:
            response = raw_client.request(method, path, params=params, headers=AUTH)
            assert response.status_code == 422, (path, params, response.text[:200])
            assert response.json()["fields"] == [field], (path, params)
    assert client.get(f"{url}/candidates", params={"offset": 2**63 - 1}).json()["items"] == []


def test_an_unknown_target_of_a_filter_is_a_422_naming_the_devices(searched):
    client, _, _, search_id = searched
    url = f"/searches/{search_id}"
    with TestClient(client.app, raise_server_exceptions=False) as raw_client:
        for path, params in [
            (f"{url}/candidates", {"target": "bogus", "where": "peak_sram_kb<=6"}),
            (f"{url}/points", {"target": "bogus", "metric": "peak_sram_kb"}),
            (f"{url}/points", {"target": "bogus"}),
            (f"{url}/pareto", {"target": "bogus", "where": "peak_sram_kb<=6"}),
        ]:
            response = raw_client.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text[:200])
            body = response.json()
            assert body["error"] == "QueryError" and "'bogus'" in body["detail"]
            assert "stm32f746" in body["detail"] and "h100-sxm" in body["detail"]


def test_any_other_error_is_a_json_500_with_an_id_the_log_names(service, monkeypatch, caplog):
    client, _, _ = service

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(core, "list_searches", broken)
    raw_client = TestClient(client.app, raise_server_exceptions=False)
    with raw_client, caplog.at_level("ERROR", logger="nas.service"):
        response = raw_client.get("/searches")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail", "id"} and body["error"] == "InternalError"
    assert f"error id {body['id']}" in body["detail"] and len(body["id"]) >= 6
    assert "secret internals" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if body["id"] in r.getMessage()]
    assert logged and logged[0].exc_info[0] is RuntimeError  # with its traceback


@both_backends
def test_unknown_ids_are_404_on_every_route(searched):
    client, _, _, search_id = searched
    for path in [
        "/searches/404",
        "/searches/404/pareto",
        "/searches/404/pareto.png",
        "/searches/404/candidates",
        "/searches/404/candidates/0",
        "/searches/404/events",
        "/exports/404",
        f"/searches/{search_id}/candidates/9999",
        "/hardware/..%2F..%2Fetc",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "NotFoundError", path
    assert "no search with id 404" in client.get("/searches/404").json()["detail"]
    assert "no candidate 9999" in client.get(f"/searches/{search_id}/candidates/9999").text
    for path in ["/searches/404/cancel", "/searches/404/resume"]:
        response = client.post(path, headers=AUTH)
        assert response.status_code == 404 and "no search with id 404" in response.text, path
    assert client.get("/nowhere").json() == {
        "error": "NotFoundError",
        "detail": "no route GET /nowhere",
    }
    assert client.get("/hardware/stm32f746").json()["name"] == "stm32f746"
    assert any(s["name"] == "mnist-mbv3" for s in client.get("/spaces").json()["items"])


@both_backends
def test_sql_in_query_and_path_parameters_is_a_clean_422(searched):
    client, _, store, search_id = searched
    tables = store.tables()
    url = f"/searches/{search_id}"
    attempts = [
        (f"{url}/pareto", {"where": "top1>=0.5; DROP TABLE searches"}),
        (f"{url}/pareto", {"where": "top1>=0.5 OR 1=1"}),
        (f"{url}/pareto", {"where": "top1>=0.5' OR '1'='1"}),
        (f"{url}/pareto", {"where": "stm32f746.flash_kb<=1e9); DELETE FROM candidates; --"}),
        (f"{url}/pareto", {"target": "h100-sxm'; DROP TABLE candidates; --"}),
        (f"{url}/pareto.png", {"where": "top1>=0.5; DROP TABLE searches"}),
        (f"{url}/points", {"metric": "top1; DROP TABLE metrics"}),
        (f"{url}/candidates", {"feasible": "1; DROP TABLE candidates"}),
        ("/exports", {"search": "1 OR 1=1"}),
        ("/searches/1%3B%20DROP%20TABLE%20searches", {}),
        (f"{url}/candidates/0%20OR%201%3D1", {}),
    ]
    for path, params in attempts:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"] in ("QueryError", "RequestValidationError", "UserError")
    assert store.tables() == tables  # nothing dropped
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Search)) == 1
        assert s.scalar(select(func.count()).select_from(Candidate)) == 24
    assert client.get(f"{url}/pareto", params={"where": "top1>=0"}).status_code == 200


def test_an_unknown_x_axis_of_the_plot_is_a_422(searched):
    client, _, _, search_id = searched
    with TestClient(client.app, raise_server_exceptions=False) as raw_client:
        response = raw_client.get(
            f"/searches/{search_id}/pareto.png", params={"x": "top1; DROP TABLE metrics"}
        )
    assert response.status_code == 422 and "top1; DROP TABLE metrics" in response.text


# ----- tokens, sizes, private reads -----------------------------------------------------------

MUTATING = ["/searches", "/searches/{id}/cancel", "/searches/{id}/resume"]
BAD_AUTHORIZATION = [
    None,
    "Bearer nope",
    "Bearer ",
    "Bearer",
    f"Basic {TOKEN}",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    TOKEN,
]


@pytest.mark.parametrize("route", MUTATING)
def test_every_mutating_route_refuses_a_missing_or_wrong_token(searched, route):
    client, app, store, search_id = searched
    before = core.get_search(search_id, store.url)
    path = route.format(id=search_id)
    for value in BAD_AUTHORIZATION:
        headers = {} if value is None else {"Authorization": value}
        response = client.post(path, content=b"{}", headers=headers)
        assert response.status_code == 401, (path, value)
        # no bearer token, or a wrong one: each says which (test_api_edges.py)
        assert response.json()["detail"] in (
            "a bearer token is required (Authorization: Bearer ...)",
            "the bearer token does not match the server's token",
        )
    after = core.get_search(search_id, store.url)
    assert after == before and core.list_searches(store.url)["total"] == 1  # nothing changed
    assert app.state.jobs.workers == {}  # and no worker was started


def test_a_non_ascii_token_is_refused_not_a_server_error(service):
    client, _, _ = service
    with TestClient(client.app, raise_server_exceptions=False) as raw_client:
        response = raw_client.post("/searches/1/cancel", headers={"Authorization": b"Bearer \xe9"})
    assert response.status_code == 401


def test_a_non_ascii_server_token_is_matched_as_utf8_bytes(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    app = create_app(store, tmp_path / "service", "pässwörd", supervise=False)
    with TestClient(app, raise_server_exceptions=False) as client:

        def cancel(value: bytes) -> int:
            return client.post("/searches/1/cancel", headers={"Authorization": value}).status_code

        assert cancel("Bearer pässwörd".encode()) == 404  # as curl sends it: past the token
        for wrong in [b"Bearer passwort", "Bearer pässwört".encode(), b"Bearer \xe9"]:
            assert cancel(wrong) == 401, wrong
    # the token's Latin-1 bytes are other bytes (TestClient sends every header as UTF-8)
    latin1 = [(b"authorization", "Bearer pässwörd".encode("latin-1"))]
    with pytest.raises(RequestError, match="does not match the server's token"):
        require_token(Request({"type": "http", "headers": latin1, "app": app}))
    store.dispose()


def test_oversized_bodies_are_413_whatever_the_content_length_says(service):
    client, _, _ = service
    huge = b"x" * (MAX_BODY_BYTES + 1)
    honest = client.post("/searches", content=huge, headers=AUTH)
    assert honest.status_code == 413 and f"over {MAX_BODY_BYTES} bytes" in honest.text
    lying = client.post("/searches", content=huge, headers={**AUTH, "Content-Length": "100"})
    assert lying.status_code == 413  # read up to the limit, whatever the header said

    def chunks():
        for _ in range(MAX_BODY_BYTES // (1 << 16) + 1):
            yield b"x" * (1 << 16)

    streamed = client.post("/searches", content=chunks(), headers=AUTH)
    assert "content-length" not in streamed.request.headers  # sent chunked
    assert streamed.status_code == 413
    at_limit = client.post("/searches", content=b"x" * MAX_BODY_BYTES, headers=AUTH)
    assert at_limit.status_code == 400  # read whole, and refused for what it is
    big_header = {**AUTH, "Content-Length": str(10 * MAX_BODY_BYTES)}
    assert client.post("/searches/1/cancel", headers=big_header).status_code == 413
    assert client.get("/searches").json()["total"] == 0


def test_private_reads_need_the_token_on_every_read(searched, tmp_path):
    client, _, store, search_id = searched
    private = create_app(store, tmp_path / "private", TOKEN, private_reads=True, supervise=False)
    reads = [
        "/searches",
        f"/searches/{search_id}",
        f"/searches/{search_id}/pareto",
        f"/searches/{search_id}/pareto.png",
        f"/searches/{search_id}/candidates",
        f"/searches/{search_id}/candidates/0",
        f"/searches/{search_id}/points",
        f"/searches/{search_id}/events",
        f"/searches/{search_id}/export-formats",
        "/exports",
        "/exports/1",
        "/hardware",
        "/hardware/stm32f746",
        "/spaces",
        "/supernets",
    ]
    with TestClient(private) as closed:
        for path in reads:
            assert client.get(path).status_code in (200, 404), path  # open by default
            assert closed.get(path).status_code == 401, path
            wrong = closed.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
        assert closed.get(f"/searches/{search_id}", headers=AUTH).json()["id"] == search_id
        assert closed.get("/searches", headers=AUTH).json()["total"] == 1


def test_serve_private_reads_flag_closes_reads(monkeypatch, tmp_path):
    """`nas serve --private-reads` builds the app with reads closed (uvicorn not started)."""
    import uvicorn
    from typer.testing import CliRunner

    from nas.cli import app as cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setenv("NAS_API_TOKEN", TOKEN)
    db = f"sqlite:///{tmp_path / 'served.db'}"
    for flag, expected in [([], 200), (["--private-reads"], 401)]:
        args = ["serve", "--db", db, "--data-dir", str(tmp_path / "data"), "--port", "8123"]
        result = CliRunner().invoke(cli, [*args, *flag])
        assert result.exit_code == 0, result.output
        assert served["port"] == 8123 and served["host"] == "127.0.0.1"
        with TestClient(served["app"]) as client:
            assert client.get("/searches").status_code == expected
            assert client.get("/searches", headers=AUTH).status_code == 200
            assert client.post("/searches", content=b"{}").status_code == 401


def test_only_loopback_hosts_serve_without_a_token():
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.5")


def test_serve_refuses_a_public_host_without_a_token(monkeypatch):
    from typer.testing import CliRunner

    from nas.cli import app

    monkeypatch.delenv("NAS_API_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without a token" in result.output
