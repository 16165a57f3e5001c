"""Ray workers: a local instance, an actor that dies, and a two-node cluster."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nas.evaluation import CandidateEvaluator, evaluator_spec
from nas.search import COMPLETED, launch_search
from nas.store import Store
from nas.workers import LocalPool, RayPool, start_ray

ray = pytest.importorskip("ray")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for this module (2 CPUs, no dashboard, a short temp dir of its own,
    removed when it stops); the two-node test swaps it for a cluster and starts it again."""
    session = {"ray": start_ray(None, num_cpus=2)}
    assert session["ray"] is not None, "another module left Ray running"
    yield session
    session["ray"].stop()


def _rows(store, search_id):
    from nas.pareto import load_candidates

    return [
        (c.trial, c.arch_id, round(c.metrics["top1"], 6), c.feasible)
        for c in load_candidates(store, search_id)
    ]


def test_search_on_two_actors_matches_in_process(local_ray, search_config, tmp_path):
    config = search_config(workers=2)
    store = Store(config.config.database)
    on_ray = launch_search(config, store, progress=False)
    local = launch_search(search_config(workers=0), store, progress=False)
    assert on_ray.status == COMPLETED
    assert _rows(store, on_ray.search_id) == _rows(store, local.search_id)


def test_dead_actor_work_is_retried(local_ray, search_config):
    config = search_config()
    resources = config.resources
    spec = evaluator_spec(resources, threads=1)
    local = LocalPool(CandidateEvaluator.of(resources))
    archs = [local.evaluator.space.sample(np.random.default_rng(i)) for i in range(12)]
    expected = local.evaluate(archs)
    pool = RayPool(spec, workers=2)
    try:
        ray.kill(pool.actors[0])  # dies before it can return its chunk
        got = pool.evaluate(archs)
        assert pool.restarts == 1
        assert [round(r["top1"], 6) for r in got] == [round(r["top1"], 6) for r in expected]
        assert got[0]["stm32f746.peak_sram_kb"] == expected[0]["stm32f746.peak_sram_kb"]
    finally:
        pool.close()


def test_two_node_cluster_runs_a_search(local_ray, search_config, tmp_path):
    from ray.cluster_utils import Cluster

    local_ray["ray"].stop()  # the cluster brings its own head node
    assert not os.path.exists(local_ray["ray"].temp_dir)  # no logs and sockets left in /tmp
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    try:
        config = search_config(workers=2, ray_address=cluster.address)
        spec = evaluator_spec(config.resources, threads=1)
        pool = RayPool(spec, workers=2, address=cluster.address)
        try:
            nodes = {node for node, _ in pool.locations()}
            assert len(nodes) == 2  # one CPU per node: the actors are on different machines
            outcome = launch_search(
                config, Store(config.config.database), pool=pool, progress=False
            )
            assert outcome.status == COMPLETED and outcome.candidates == 24
        finally:
            pool.close()
        served_on_the_cluster(cluster.address, search_config, tmp_path)
    finally:
        ray.shutdown()
        cluster.shutdown()
        local_ray["ray"] = start_ray(None, num_cpus=2)


def served_on_the_cluster(address: str, search_config, tmp_path) -> None:
    """A search posted to a server started with --ray-address is evaluated on that cluster:
    its worker process joins the cluster as a driver of its own (a new Ray job)."""
    from fastapi.testclient import TestClient
    from ray._private.state import jobs

    from nas.service.app import create_app

    config = search_config(database=f"sqlite:///{tmp_path / 'served.db'}")
    store = Store(config.config.database)
    app = create_app(store, tmp_path / "service", "token", ray_address=address, supervise=False)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    drivers_before = len(jobs())
    auth = {"Authorization": "Bearer token"}
    try:
        with TestClient(app) as client:
            raw = config.config.model_dump(mode="json")
            search_id = client.post("/searches", json=raw, headers=auth).json()["id"]
            assert app.state.jobs.worker("search", search_id).wait(timeout=180) == 0
            info = client.get(f"/searches/{search_id}").json()
    finally:
        app.state.jobs.stop(terminate_workers=True)
    assert info["status"] == "completed" and info["candidates"] == 24
    assert len(jobs()) == drivers_before + 1  # the worker's driver, on this cluster
    assert store_config(store, search_id)["ray_address"] == address
    store.dispose()


def store_config(store: Store, search_id: int) -> dict:
    with store.session() as s:
        return store.search(s, search_id).config


def test_predictor_fit_measures_on_actors(local_ray, tiny_supernet, tmp_path):
    """`nas predictor fit --workers 2`: the archs are measured by two Ray actors, every one
    recorded, and each agrees with measuring it in this process."""
    import json

    from typer.testing import CliRunner

    from nas.cli import app
    from supernet.mbconv.predictor import measure_archs, measurements_path

    out = tmp_path / "predictor.pt"
    args = ["predictor", "fit", "-c", str(tiny_supernet.path), "--n", "14", "--held-out", "4"]
    args += ["--seed", "7", "--workers", "2", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_train"] == 10 and out.exists()
    recorded = {}
    for line in measurements_path(tiny_supernet).read_text().splitlines():
        row = json.loads(line)
        recorded[row["arch_id"]] = row
    local = measure_archs(tiny_supernet, 14, seed=7, path=tmp_path / "local.jsonl", progress=False)
    images = len(tiny_supernet.evaluator().labels)
    for m in local:  # one thread against two: bfloat16 sums may move one image
        assert abs(recorded[m.arch_id]["top1"] - m.top1) <= 1 / images + 1e-9
        assert recorded[m.arch_id]["loss"] == pytest.approx(m.loss, rel=0.05)
