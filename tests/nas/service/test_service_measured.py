"""Quality measured on the supernet, through the API: an active search posted runs in a
worker like any other search, and its front and points are all measured; GET /points marks
which candidates were measured (none of a predictor search, the verified front of a
predictor+verify one) and GET /candidates/N says where a candidate's quality came from."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from nas.pareto import load_candidates
from nas.search import launch_search
from nas.service.app import create_app
from nas.store import Store
from tests.nas.service.test_service import AUTH, TOKEN, wait_until_done

# the fewest measurements the config check accepts (nas.config.MIN_ACTIVE_BUDGET): an initial
# sample of 20, then two rounds of 5, on the tiny supernet (~0.5 s a measurement)
ACTIVE = {"evaluation": "active", "predictor": None, "budget": 30, "active": {"batch": 5}}


@pytest.fixture
def client(api_client):
    return api_client(TOKEN)


@pytest.mark.slow  # 30 measurements in a worker process that imports torch: ~30 s here
def test_an_active_search_posted_runs_in_a_worker_and_shows_measured_points_only(
    client, raw_config
):
    client, app = client
    raw = raw_config(**ACTIVE)
    created = client.post("/searches", content=json.dumps(raw), headers=AUTH)
    assert created.status_code == 201, created.text
    search_id = created.json()["id"]
    assert app.state.jobs.worker("search", search_id).pid  # not run in the handler
    info = wait_until_done(client, search_id, seconds=240)
    assert info["status"] == "completed", info
    assert info["evaluation"] == "active" and info["candidates"] == 30
    assert info["generations"] == "3/3"  # the initial sample, then two rounds of 5

    front = client.get(f"/searches/{search_id}/pareto").json()["front"]
    assert front and all(row["top1_measured"] == row["top1"] for row in front)
    points = client.get(f"/searches/{search_id}/points").json()
    assert len(points["trial"]) == 30
    assert points["measured"] == list(range(30))  # every point the page draws
    detail = client.get(f"/searches/{search_id}/candidates/{front[0]['candidate']}").json()
    assert detail["quality_source"] == "supernet"
    assert detail["measured"]["top1"] == detail["top1"]


def test_points_mark_the_verified_front_of_a_predictor_verify_search(search_config, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    small = {"population": 8, "generations": 2, "seed": 0}  # a front of a few to measure
    verify = launch_search(
        search_config(evaluation="predictor+verify", algorithm=small), store, progress=False
    )
    predicted = launch_search(search_config(algorithm=small), store, progress=False)
    rows = load_candidates(store, verify.search_id)
    verified = {c.trial for c in rows if c.measured}
    assert 0 < len(verified) < len(rows)
    with TestClient(app) as client:
        points = client.get(f"/searches/{verify.search_id}/points").json()
        marked = {points["trial"][i] for i in points["measured"]}
        assert marked == verified
        assert points["measured"] == sorted(points["measured"])
        trial = next(iter(verified))
        detail = client.get(f"/searches/{verify.search_id}/candidates/{trial}").json()
        assert detail["quality_source"] == "predictor" and "top1" in detail["measured"]
        none = client.get(f"/searches/{predicted.search_id}/points").json()
        assert none["measured"] == [] and len(none["trial"]) == 16
    store.dispose()
