"""The HTTP API's contract as /openapi.json states it: every JSON route documents its response
schema, the schemas are what the routes return, and the docs pages load without a network."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from nas import core
from nas.search import launch_search
from nas.service import schemas
from nas.service.app import create_app
from nas.store import Store

TOKEN = "api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path):
    """A client of a server on an empty database."""
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    with TestClient(app) as client:
        yield client
    store.dispose()


@pytest.fixture
def searched(search_config, tmp_path):
    """A client of a server over a completed search (run in this process) with one export
    queued (no worker runs it): the client, the search's id, the export's id."""
    config = search_config()
    store = Store(config.config.database)
    search_id = launch_search(config, store, progress=False).search_id
    export_id = core.queue_export(search_id, 0, tmp_path / "service", ["onnx"], db=store)
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    with TestClient(app) as client:
        yield client, search_id, export_id
    store.dispose()


# ----- the schema -----------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_json_route_documents_its_response_schema(client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    components = spec["components"]["schemas"]
    lacking, undocumented, routes = [], [], 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            routes += 1
            name = f"{method.upper()} {path}"
            success = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            assert len(success) == 1, f"{name}: success statuses {list(success)}"
            content = next(iter(success.values())).get("content") or {}
            if not content:
                undocumented.append(name)  # not even a media type
            json_schema = content.get("application/json", {}).get("schema")
            if "application/json" in content and not (
                json_schema and ("$ref" in json_schema or "properties" in json_schema)
            ):
                lacking.append(name)
            for status in ("404", "422"):  # the one error shape
                error = operation["responses"][status]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorModel"}, (name, status)
    assert routes >= 20
    assert not lacking, f"JSON routes without a response schema: {lacking}"
    assert not undocumented, f"routes without a media type: {undocumented}"
    prefix = "#/components/schemas/"
    dangling = {ref for ref in _refs(spec) if ref.removeprefix(prefix) not in components}
    assert all(ref.startswith(prefix) for ref in _refs(spec))
    assert not dangling, f"$refs that resolve to nothing: {sorted(dangling)}"


def test_non_json_routes_name_their_media_types(client):
    paths = client.get("/openapi.json").json()["paths"]

    def media(path: str) -> set[str]:
        return set(paths[path]["get"]["responses"]["200"]["content"])

    assert media("/searches/{search_id}/events") == {"text/event-stream"}
    assert media("/searches/{search_id}/pareto.png") == {"image/png"}
    assert media("/exports/{export_id}/files/{name}") == {"application/octet-stream"}
    assert media("/searches/{search_id}/pareto") == {"application/json", "text/csv"}


def test_the_event_stream_sends_the_events_its_schema_declares(searched):
    client, search_id, _ = searched
    paths = client.get("/openapi.json").json()["paths"]
    content = paths["/searches/{search_id}/events"]["get"]["responses"]["200"]["content"]
    declared = content["text/event-stream"]["schema"]  # one event (OpenAPI 3.1)
    with client.stream("GET", f"/searches/{search_id}/events") as stream:
        text = "".join(stream.iter_text())
    blocks = text.strip().split("\n\n")
    events = [dict(line.split(": ", 1) for line in block.splitlines()) for block in blocks]
    assert [event["event"] for event in events] == ["progress", "end"]
    for event in events:
        assert set(declared["required"]) <= set(event) <= set(declared["properties"])
        assert event["event"] in declared["properties"]["event"]["enum"]
        assert isinstance(json.loads(event["data"]), dict)


def test_times_are_rfc3339_with_their_utc_offset(searched):
    """SQLite gives stored times back without a zone: sent as they were, they were not the
    `date-time` the schema declares, and differed from PostgreSQL's."""
    client, search_id, export_id = searched
    search = client.get(f"/searches/{search_id}").json()
    listed = client.get("/searches").json()["items"][0]
    export = client.get(f"/exports/{export_id}").json()
    times = [search["created_at"], search["finished_at"], listed["created_at"]]
    for text in [*times, export["created_at"]]:
        assert datetime.fromisoformat(text).utcoffset() == timedelta(0), text
    assert export["finished_at"] is None  # queued: no worker ran it


# ----- the docs pages -------------------------------------------------------------------------

ASSET_TYPES = ("javascript", "text/css", "image/")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_files_the_server_serves(client, page):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.findall(r"(?:https?:)?//[\w.-]+\.\w+", html), "a URL off the server"
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert links, html
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
        asset = client.get(link)
        assert asset.status_code == 200, link
        kind = asset.headers["content-type"]
        assert any(t in kind for t in ASSET_TYPES), (link, kind)
        assert len(asset.content) > 1000, link
    assert "/openapi.json" in html
    assert client.get("/openapi.json").status_code == 200


def test_the_docs_use_swagger_ui_5(client):
    """FastAPI writes OpenAPI 3.1, which Swagger UI reads from version 5 on."""
    bundle = client.get("/docs-assets/swagger-ui-bundle.js").text
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)
    assert "validatorUrl" in client.get("/docs").text  # no badge fetched from swagger.io


# ----- the models are what the routes return ---------------------------------------------------


def _matches(model: type[BaseModel], body: Any) -> None:
    """`body` validates, and the model gives it back whole: no key undeclared and dropped,
    no value changed in type (an int read as a float)."""
    parsed = model.model_validate(body)
    assert parsed.model_dump(mode="json", exclude_unset=True) == body


def test_responses_validate_against_their_models(searched):
    client, search_id, export_id = searched
    url = f"/searches/{search_id}"
    expected: list[tuple[str, type[BaseModel]]] = [
        ("/searches", schemas.Page[schemas.SearchSummary]),
        (url, schemas.SearchInfo),
        (f"{url}/candidates?limit=1000", schemas.Page[schemas.CandidateRow]),
        (f"{url}/candidates/0", schemas.CandidateDetail),
        (f"{url}/points", schemas.Points),
        (f"{url}/points?metric=macs&metric=params", schemas.Points),
        (f"{url}/pareto", schemas.Front),
        (f"{url}/export-formats", schemas.ExportFormats),
        ("/exports", schemas.Page[schemas.ExportSummary]),
        (f"/exports/{export_id}", schemas.ExportInfo),
        ("/hardware", schemas.Items[schemas.HardwareSummary]),
        ("/hardware/stm32f746", schemas.HardwareSummary),
        ("/hardware/h100-sxm", schemas.HardwareSummary),
        ("/spaces", schemas.Items[schemas.SpaceSummary]),
        ("/families", schemas.Items[schemas.FamilySummary]),
        ("/supernets", schemas.TrainedFiles),
        ("/searches/404", schemas.ErrorModel),
        ("/searches?limit=0", schemas.ErrorModel),
    ]
    for path, model in expected:
        response = client.get(path)
        body = response.json()
        assert body, path
        _matches(model, body)
    assert client.get(f"{url}/candidates").json()["total"] == 24
    assert client.get("/searches?limit=0").json()["fields"] == ["limit"]
    cancelled = client.post(f"{url}/cancel", headers=AUTH)  # completed: refused, one shape
    _matches(schemas.ErrorModel, cancelled.json())
    resumed = client.post(f"{url}/resume", headers=AUTH)
    assert resumed.status_code == 409
    _matches(schemas.ErrorModel, resumed.json())


def test_each_app_keeps_its_own_state(searched, tmp_path):
    """Routes read the app they serve (its store, token): two apps in one process differ."""
    client, search_id, _ = searched
    empty = Store(f"sqlite:///{tmp_path / 'other.db'}")
    other = create_app(empty, tmp_path / "other", token=None, supervise=False)
    try:
        with TestClient(other) as open_client:
            assert open_client.get("/searches").json()["total"] == 0
            assert client.get("/searches").json()["total"] == 1
            # no token on this server: the request reaches the core (an unknown search)
            assert open_client.post(f"/searches/{search_id}/cancel").status_code == 404
            assert client.post(f"/searches/{search_id}/cancel").status_code == 401
    finally:
        empty.dispose()
