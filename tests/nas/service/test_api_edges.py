"""The API's answers at their edges: no server path or database URL in any answer, `Allow`
on a 405, one status (409) for a search not in a state for what was asked, a wrong token
told from a missing one, the bearer scheme in the OpenAPI document, and /docs offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import latency_models as lm
from nas import core
from nas.errors import StoreError
from nas.search import INFEASIBLE, launch_search
from nas.service.app import create_app
from nas.store import Store, safe_url

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def finished(search_config, tmp_path):
    """A client of a server with a token over a database that holds one finished search
    (infeasible: its flash limit is below the smallest subnet's, so it ends at once), the
    search's id, the database's URL and the app."""
    config = search_config(targets={"stm32f746": {"flash_kb": 1.0}})
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    assert outcome.status == INFEASIBLE
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    with TestClient(app) as client:
        yield client, outcome.search_id, config.config.database, app
    store.dispose()


@pytest.fixture
def bare(tmp_path):
    """A client of a server with a token over an empty database, and its app."""
    store = Store(f"sqlite:///{tmp_path / 'bare.db'}")
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    with TestClient(app) as client:
        yield client, app
    store.dispose()


def _server_texts(database: str, app) -> list[str]:
    """What no answer may show: the database's URL and file, the data folder, the repo."""
    store = app.state.store
    return [safe_url(database), str(store.sqlite_path), str(app.state.data_dir), str(REPO)]


def test_not_found_and_store_errors_show_no_database_url(finished, monkeypatch):
    client, _, database, app = finished
    answers = [
        client.get("/searches/404"),
        client.get("/searches/404/pareto"),
        client.get("/searches/404/candidates"),
        client.post("/searches/404/cancel", headers=AUTH),
        client.post("/searches/404/resume", headers=AUTH),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json()["detail"] == "no search with id 404", answer.text
        assert not [text for text in _server_texts(database, app) if text in answer.text]

    # a database refusing work: the core names it (for the CLI); the API does not
    def refused(*args, **kwargs):
        raise StoreError(f"cannot read database {safe_url(database)}: disk I/O error")

    monkeypatch.setattr(core, "list_searches", refused)
    answer = client.get("/searches")
    assert answer.status_code == 422
    assert answer.json()["detail"] == "cannot read the server's database: disk I/O error"


def test_no_read_answer_shows_a_server_path(finished, monkeypatch, tmp_path):
    client, search_id, database, app = finished
    # a profile of the server's own folder, beside the shipped ones
    own = tmp_path / "own-profiles"
    own.mkdir()
    shipped = (lm.PROFILE_DIR / "stm32f746.yaml").read_text()
    (own / "my-board.yaml").write_text(shipped.replace("name: stm32f746", "name: my-board"))
    monkeypatch.setenv("NAS_PROFILE_DIR", str(own))

    devices = {d["name"]: d for d in client.get("/hardware").json()["items"]}
    assert devices["h100-sxm"]["source"] == "latency_models/profiles/h100-sxm.yaml"
    assert devices["my-board"]["source"] == "my-board.yaml"
    one = client.get("/hardware/stm32f746").json()
    assert one["source"] == "latency_models/profiles/stm32f746.yaml"

    server_texts = [*_server_texts(database, app), str(own), str(tmp_path)]
    reads = [
        "/hardware",
        "/hardware/my-board",
        "/hardware/nothing",
        "/spaces",
        "/families",
        "/searches",
        f"/searches/{search_id}",
        f"/searches/{search_id}/pareto",
        f"/searches/{search_id}/candidates",
        f"/searches/{search_id}/points",
        f"/searches/{search_id}/candidates/0",
        "/searches/404",
        "/exports",
        "/exports/404",
    ]
    for path in reads:
        answer = client.get(path)
        assert answer.status_code in (200, 404), (path, answer.text)
        shown = [text for text in server_texts if text in answer.text]
        assert not shown, (path, shown)


def test_a_405_names_every_method_the_path_takes(bare):
    client, _ = bare
    answer = client.delete("/searches")
    assert answer.status_code == 405
    assert answer.json()["error"] == "MethodNotAllowed"
    # two routes serve /searches (GET lists, POST launches): the header names both
    assert answer.headers["allow"] == "GET, POST"
    assert client.put("/searches/1/cancel").headers["allow"] == "POST"
    assert client.post("/hardware").headers["allow"] == "GET"


def test_cancel_and_resume_of_a_finished_search_are_both_409(finished):
    client, search_id, _, _ = finished
    for action in ("cancel", "resume"):
        answer = client.post(f"/searches/{search_id}/{action}", headers=AUTH)
        assert answer.status_code == 409, (action, answer.text)
        assert answer.json() == {
            "error": "RequestError",
            "detail": f"search {search_id} is already {INFEASIBLE}",
        }
    declared = client.get("/openapi.json").json()["paths"]
    for action in ("cancel", "resume"):
        assert "409" in declared[f"/searches/{{search_id}}/{action}"]["post"]["responses"]


def test_a_wrong_token_is_told_from_a_missing_one_and_never_echoed(finished):
    client, search_id, _, _ = finished
    path = f"/searches/{search_id}/cancel"
    for missing in [None, "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN]:
        headers = {} if missing is None else {"Authorization": missing}
        answer = client.post(path, headers=headers)
        assert answer.status_code == 401, missing
        assert answer.json()["detail"] == "a bearer token is required (Authorization: Bearer ...)"
        assert answer.headers["www-authenticate"] == "Bearer"
    for wrong in ["nope-not-it", f"{TOKEN}x", TOKEN[:-1]]:
        answer = client.post(path, headers={"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 401, wrong
        assert answer.json()["detail"] == "the bearer token does not match the server's token"
        assert wrong not in answer.text and TOKEN not in answer.text
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def _secured(spec: dict) -> dict[str, bool]:
    """'METHOD path' -> whether the operation declares the bearer scheme."""
    return {
        f"{method.upper()} {path}": {"HTTPBearer": []} in operation.get("security", [])
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


def test_openapi_declares_the_bearer_scheme_where_the_token_is_checked(bare, tmp_path):
    client, app = bare
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    secured = _secured(spec)
    assert secured["POST /searches"] and secured["POST /searches/{search_id}/cancel"]
    assert secured["POST /searches/{search_id}/candidates/{number}/export"]
    assert all(secured[op] for op in secured if op.startswith("POST ")), secured
    assert not any(secured[op] for op in secured if op.startswith("GET ")), secured  # open

    private = create_app(
        app.state.store, tmp_path / "private", TOKEN, private_reads=True, supervise=False
    )
    with TestClient(private) as closed:
        assert all(_secured(closed.get("/openapi.json", headers=AUTH).json()).values())


def test_docs_load_only_from_the_server(bare):
    client, _ = bare
    html = client.get("/docs").text
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert urls, html
    assert "//" not in html  # no URL of another host (nor a scheme-relative one)
    assert '"validatorUrl": null' in html  # nor the validator badge's server
    assets = [u for u in urls if u.endswith((".js", ".css"))]
    assert len(assets) >= 2, urls  # Swagger UI's script and its CSS
    for url in [*assets, "/openapi.json"]:
        answer = client.get(url)
        assert answer.status_code == 200 and len(answer.content) > 1000, url
    redoc = client.get("/redoc").text
    assert "//" not in redoc
    for url in re.findall(r"""src=['"]([^'"]+\.js)['"]""", redoc):
        assert client.get(url).status_code == 200, url
