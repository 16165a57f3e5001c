"""The HTTP API: the same validation, fronts and errors as the CLI; searches in workers."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from fastapi.testclient import TestClient

from nas import core
from nas.commands.serve import _is_loopback
from nas.service.app import MAX_BODY_BYTES, create_app
from nas.store import Store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def service(search_config, tmp_path):
    """A client of a server on a new SQLite database, and a valid search config as JSON."""
    config = search_config()
    raw = config.model_dump(mode="json")
    store = Store(config.database)
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    with TestClient(app) as client:
        yield client, raw, app


def wait_until_done(client: TestClient, search_id: int, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = client.get(f"/searches/{search_id}").json()
        if info["status"] not in ("running", "cancelling"):
            return info
        time.sleep(0.5)
    raise AssertionError(f"search {search_id} still {info['status']} after {seconds} s")


def test_a_search_posted_runs_in_a_worker_and_its_front_is_the_cli_front(service):
    client, raw, app = service
    created = client.post("/searches", content=json.dumps(raw), headers=AUTH)
    assert created.status_code == 201, created.text
    search_id = created.json()["id"]
    assert app.state.jobs.workers[search_id].pid  # not run in the handler
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
    assert "event: progress" in text and text.rstrip().endswith('{"status": "completed"}')


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
    progress = [e["generations"] for e in events if "generations" in e]
    assert progress[-1] == "6/6" and len(progress) >= 2  # one per generation it saw
    assert events[-1] == {"status": "completed"}


def test_yaml_bodies_and_validation_errors_name_the_field(service):
    client, raw, _ = service
    bad = {**raw, "algorithm": {"population": 2}}
    response = client.post("/searches", content=yaml.safe_dump(bad), headers=AUTH)
    assert response.status_code == 422 and "algorithm.population" in response.json()["detail"]
    malformed = client.post("/searches", content="name: [unclosed", headers=AUTH)
    assert malformed.status_code == 400 and "not valid JSON or YAML" in malformed.json()["detail"]
    not_a_mapping = client.post("/searches", content="[1, 2]", headers=AUTH)
    assert not_a_mapping.status_code == 400
    assert client.get("/searches").json()["total"] == 0  # nothing was recorded


def test_tokens_sizes_and_unknown_ids(service):
    client, raw, _ = service
    body = json.dumps(raw)
    assert client.post("/searches", content=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/searches", content=body, headers=wrong).status_code == 401
    assert client.post("/searches/1/cancel").status_code == 401
    huge = client.post("/searches", content=b"x" * (MAX_BODY_BYTES + 1), headers=AUTH)
    assert huge.status_code == 413
    missing = client.get("/searches/404")
    assert missing.status_code == 404 and "no search with id 404" in missing.json()["detail"]
    assert client.get("/searches/404/pareto").status_code == 404
    assert client.get("/hardware/..%2F..%2Fetc").status_code == 404
    assert client.get("/hardware/stm32f746").json()["name"] == "stm32f746"
    assert any(s["name"] == "mnist-mbv3" for s in client.get("/spaces").json()["items"])


def test_a_restarted_server_resumes_what_was_running(search_config, tmp_path):
    config = search_config(algorithm={"population": 8, "generations": 3})
    store = Store(config.database)
    from nas.search import launch

    runner = launch(config, store, progress=False)
    runner.run(stop_after_generations=1)  # a driver that stopped after one generation
    from nas.search.records import release_lease

    release_lease(store, runner.search_id, runner.driver)  # ... and then died
    app = create_app(store, tmp_path / "service", TOKEN)
    with TestClient(app) as client:  # startup supervises: the search gets a worker
        info = wait_until_done(client, runner.search_id)
    assert info["status"] == "completed" and info["candidates"] == 24


def test_only_loopback_hosts_serve_without_a_token():
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.5")


def test_serve_refuses_a_public_host_without_a_token(monkeypatch):
    from typer.testing import CliRunner

    from nas.cli import app

    monkeypatch.delenv("NAS_API_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without a token" in result.output
