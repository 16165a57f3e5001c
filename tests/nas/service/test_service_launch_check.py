"""What the launch form asks of the API: every problem of a config at once, each beside its
field (POST /searches, and its dry run POST /searches/check); the devices that can cost a
space (GET /hardware?space=); the server's working folder (GET /supernets); a search's
config to clone (GET /searches/ID)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.search import launch_search
from nas.store import Store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(api_client):
    client, _ = api_client(TOKEN)
    return client


def test_a_launch_answers_every_problem_beside_its_field(client, raw_config):
    raw = raw_config(algorithm={"population": 2}, supernet="no/such.pt")
    raw["targets"] = {"stm32f746": {"flash_kb": -1}}
    del raw["database"]
    for route in ("/searches", "/searches/check"):
        answer = client.post(route, content=json.dumps(raw), headers=AUTH)
        assert answer.status_code == 422
        body = answer.json()
        assert body["problems"] == [
            {"field": "algorithm.population", "message": "must be at least 4, got 2"},
            {"field": "targets.stm32f746.flash_kb", "message": body["problems"][1]["message"]},
            {"field": "supernet", "message": "checkpoint file not found: no/such.pt"},
        ]
        assert "a limit must be > 0" in body["problems"][1]["message"]
        assert body["detail"].startswith("invalid search config request body:\n")
    empty = client.post("/searches", content="{}", headers=AUTH).json()
    assert [p["field"] for p in empty["problems"]] == ["supernet", "targets", "predictor"]
    assert client.get("/searches").json()["total"] == 0


def test_a_dry_run_checks_and_records_nothing(client, raw_config):
    raw = raw_config()
    del raw["database"]
    answer = client.post("/searches/check", content=json.dumps(raw), headers=AUTH)
    assert answer.status_code == 200, answer.text
    config = answer.json()["config"]
    assert Path(config["supernet"]).is_absolute() and "database" not in config
    assert config["objectives"][0]["metric"] == "top1"  # defaults filled in
    assert client.post("/searches/check", content=json.dumps(raw)).status_code == 401
    assert client.get("/searches").json()["total"] == 0


def test_the_devices_that_can_cost_a_space(client):
    items = client.get("/hardware", params={"space": "mnist-mbv3"}).json()["items"]
    errors = {d["name"]: d["cost_error"] for d in items}
    assert errors["stm32f746"] is None and errors["h100-sxm"] is None
    assert "local-cpu-gan cannot cost space 'mnist-mbv3'" in errors["local-cpu-gan"]
    assert "note10 can cost input resolutions 160..224 only" in errors["note10"]
    assert "cost_error" not in client.get("/hardware").json()["items"][0]
    unknown = client.get("/hardware", params={"space": "no-such-space"})
    assert unknown.status_code == 422 and "no-such-space" in unknown.json()["detail"]
    # a space file that is not there, or that is wrong: 422 with its problems, not a 500
    missing = client.get("/hardware", params={"space": "postgresql://"})
    assert missing.status_code == 422
    assert missing.json()["problems"] == [{"field": "<file>", "message": "file not found"}]


def test_a_search_shows_its_config_and_the_server_its_working_folder(
    client, search_config, tmp_path
):
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    checked = search_config(database=db)
    search_id = launch_search(checked, Store(db), progress=False).search_id
    config = client.get(f"/searches/{search_id}").json()["config"]
    expected = checked.config.model_dump(mode="json")
    del expected["database"]  # the server's own, not the search's to repeat
    assert config == expected
    assert client.get("/supernets").json()["working_folder"] == str(Path.cwd())
