"""Exports through the API: a job run by a worker process, files kept under the server's
data folder, downloads only by a name from the export's own file list."""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from nas.export import claim_export, queue_export, run_export_job
from nas.export.jobs import remove_abandoned_staging
from nas.pareto import pareto_front
from nas.search import launch_search
from nas.service.app import create_app
from nas.store import Export, Store, lease
from nas.store.status import COMPLETED, FAILED, QUEUED, RUNNING
from tests.faults.harness import disk_fails_writing, staged

TOKEN = "export-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def searched(search_config, tmp_path):
    """A completed search, its front's first candidate, and a client of a server over it."""
    config = search_config(algorithm={"population": 8, "generations": 2, "seed": 3})
    store = Store(config.config.database)
    search_id = launch_search(config, store, progress=False).search_id
    candidate = pareto_front(store, search_id).front[0].trial
    app = create_app(store, tmp_path / "service", TOKEN, supervise=False)
    with TestClient(app) as client:
        yield client, app, store, search_id, candidate


def wait_for_export(client: TestClient, export_id: int, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = client.get(f"/exports/{export_id}").json()
        if info["status"] not in (QUEUED, RUNNING):
            return info
        time.sleep(0.3)
    raise AssertionError(f"export {export_id} still {info['status']} after {seconds} s")


def test_an_export_job_writes_its_files_under_the_data_folder_and_they_download(searched, tmp_path):
    client, app, _, search_id, candidate = searched
    queued = client.post(
        f"/searches/{search_id}/candidates/{candidate}/export",
        json={"formats": ["onnx", "state_dict"]},
        headers=AUTH,
    )
    assert queued.status_code == 202, queued.text
    export_id = queued.json()["id"]
    assert queued.json()["status"] == QUEUED
    assert app.state.jobs.worker("export", export_id).pid  # not run in the handler
    info = wait_for_export(client, export_id)
    assert info["status"] == "completed", info["message"]
    assert info["candidate"] == candidate and info["card"]["search"]["candidate"] == candidate
    assert "out_dir" not in info  # a server path is not shown
    names = {f["name"]: f for f in info["files"]}
    assert set(names) == {"model.onnx", "model.state_dict.pt", "model_card.json"}
    assert (tmp_path / "service" / "exports" / str(export_id) / "model.onnx").is_file()

    download = client.get(names["model.onnx"]["url"])
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    import hashlib

    assert hashlib.sha256(download.content).hexdigest() == names["model.onnx"]["sha256"]
    import onnxruntime as ort

    session = ort.InferenceSession(download.content, providers=["CPUExecutionProvider"])
    shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    (logits,) = session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
    assert logits.shape[0] == 1 and np.isfinite(logits).all()
    card = client.get(names["model_card.json"]["url"]).json()
    assert card["arch"] == info["card"]["arch"]

    listed = client.get("/exports", params={"search": search_id}).json()
    assert [e["id"] for e in listed["items"]] == [export_id] and listed["total"] == 1


def test_download_names_outside_the_file_list_are_refused(searched, tmp_path):
    client, _, store, search_id, candidate = searched
    export_id = queue_export(store, search_id, candidate, ["onnx"], tmp_path / "service")
    assert run_export_job(store, export_id) == "completed"
    secret = tmp_path / "service" / "exports" / "secret.txt"
    secret.write_text("not an export file")
    for name in (
        "..%2Fsecret.txt",
        "%2E%2E%2Fsecret.txt",
        "..%2F..%2Fnas.db",
        "model.state_dict.pt",  # a format that was not exported
        "nas.db",
    ):
        got = client.get(f"/exports/{export_id}/files/{name}")
        assert got.status_code == 404, (name, got.status_code)
        assert got.json()["error"] == "NotFoundError"
    # a literal ../ is resolved by the client: the request names another route, not a file
    got = client.get(f"/exports/{export_id}/files/../secret.txt")
    assert got.status_code == 404 and b"not an export file" not in got.content
    assert client.get("/exports/999/files/model.onnx").json()["detail"] == "no export 999"


def test_export_requests_are_checked_before_any_job_starts(searched):
    client, app, _, search_id, candidate = searched
    url = f"/searches/{search_id}/candidates/{candidate}/export"
    assert client.post(url, json={"formats": ["onnx"]}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post(url, json={"formats": ["onnx"]}, headers=wrong).status_code == 401
    bad = client.post(url, json={"formats": ["coreml"]}, headers=AUTH)
    assert bad.status_code == 422 and "coreml" in bad.json()["detail"]
    assert "onnx" in bad.json()["detail"]  # the allowed formats
    assert client.post(url, json={"formats": 3}, headers=AUTH).status_code == 422
    assert client.post(url, content=b"{not json", headers=AUTH).status_code == 400
    missing = client.post(f"/searches/{search_id}/candidates/9999/export", headers=AUTH)
    assert missing.status_code == 404 and "9999" in missing.json()["detail"]
    assert client.post("/searches/77/candidates/0/export", headers=AUTH).status_code == 404
    assert client.get("/exports/12345").status_code == 404
    assert app.state.jobs.workers == {}  # nothing was started for a refused request


def test_an_export_whose_worker_died_is_run_again_by_the_supervisor(searched, tmp_path):
    client, app, store, search_id, candidate = searched
    export_id = queue_export(store, search_id, candidate, "onnx", tmp_path / "service")
    dead = f"{socket.gethostname()}:{2**22 + os.getpid() % 1000}:gone"  # no such process
    with store.session() as s:  # as a worker killed mid-export leaves the row
        s.execute(
            update(Export)
            .where(Export.id == export_id)
            .values(status=RUNNING, driver=dead, lease_until=Export.created_at)
        )
    assert ("export", export_id) in app.state.jobs.supervise_once()
    assert wait_for_export(client, export_id)["status"] == "completed"
    assert app.state.jobs.supervise_once() == []  # a completed export is left alone


def test_two_workers_cannot_both_claim_one_export(searched, tmp_path):
    _, _, store, search_id, candidate = searched
    export_id = queue_export(store, search_id, candidate, "onnx", tmp_path / "service")
    assert claim_export(store, export_id, "host:1:first")
    assert not claim_export(store, export_id, "host:1:second")  # its lease is fresh
    # the second worker leaves a claimed export alone and reports its status
    assert run_export_job(store, export_id) == RUNNING


def test_a_failed_export_says_why(searched, tmp_path):
    client, _, store, search_id, candidate = searched
    export_id = queue_export(store, search_id, candidate, "onnx", tmp_path / "service")
    with store.session() as s:  # the supernet file the search used is replaced
        search = store.search(s, search_id)
        path = Path(search.supernet.path)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"tampered")
        assert run_export_job(store, export_id) == "failed"
    finally:
        path.write_bytes(original)
    info = client.get(f"/exports/{export_id}").json()
    assert info["status"] == "failed" and "SHA-256" in info["message"], info["message"]
    assert info["files"] == []


def test_a_candidate_has_its_cost_on_every_registered_device(searched):
    import latency_models as lm

    client, _, _, search_id, candidate = searched
    got = client.get(f"/searches/{search_id}/candidates/{candidate}")
    assert got.status_code == 200, got.text
    info = got.json()
    assert set(info["devices"]) == set(lm.list_hardware())
    stm32, h100 = info["devices"]["stm32f746"], info["devices"]["h100-sxm"]
    # a target device: the cost the search stored, at the batch and precision it used
    assert stm32["target"] and stm32["costs"]["peak_sram_kb"] == pytest.approx(
        info["stm32f746.peak_sram_kb"]
    )
    assert (h100["batch"], h100["options"]) == (64, {"precision": "fp16", "runtime": "tensorrt"})
    assert h100["costs"]["latency_ms"] == pytest.approx(info["h100-sxm.latency_ms"])
    other = info["devices"]["a100-sxm"]
    assert not other["target"] and other["batch"] == 1 and other["costs"]["latency_ms"] > 0
    assert client.get(f"/searches/{search_id}/candidates/4242").status_code == 404


def test_an_export_job_that_meets_a_full_disk_fails_with_the_cause(searched, tmp_path, monkeypatch):
    client, _, store, search_id, candidate = searched
    data_dir = tmp_path / "service"
    export_id = queue_export(store, search_id, candidate, ["state_dict"], data_dir)
    disk_fails_writing(monkeypatch, errno.ENOSPC)
    assert run_export_job(store, export_id) == FAILED
    info = client.get(f"/exports/{export_id}").json()
    out = data_dir / "exports" / str(export_id)
    assert info["status"] == FAILED and info["finished"] and info["files"] == []
    assert info["message"].startswith(f"no space left on device (ENOSPC) writing {out}")
    assert not out.exists() and staged(data_dir) == []


def test_staging_left_by_dead_workers_is_removed_and_a_live_workers_is_kept(searched, tmp_path):
    _, _, store, search_id, candidate = searched
    data_dir = tmp_path / "service"
    own, ended, elsewhere = (
        queue_export(store, search_id, candidate, ["onnx"], data_dir) for _ in range(3)
    )
    live = f"otherhost:{os.getpid()}:live"  # a worker of another server, its lease fresh
    with store.session() as s:
        s.execute(update(Export).where(Export.id == ended).values(status=COMPLETED))
        s.execute(
            update(Export)
            .where(Export.id == elsewhere)
            .values(status=RUNNING, driver=live, lease_until=lease.expiry())
        )
    assert claim_export(store, own, lease.driver_id())
    exports_dir = data_dir / "exports"
    exports_dir.mkdir(parents=True, exist_ok=True)  # made at start-up
    staging = {}
    for export_id, tail in ((own, "dead1"), (own, "dead2"), (ended, "x"), (elsewhere, "live")):
        folder = staging[export_id, tail] = exports_dir / f".{export_id}.partial-{tail}"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    (exports_dir / ".notes").mkdir()  # not a staging folder
    removed = remove_abandoned_staging(store, exports_dir / str(own))
    assert sorted(removed) == sorted(f for (owner, _), f in staging.items() if owner != elsewhere)
    assert {p.name for p in exports_dir.iterdir()} == {".notes", f".{elsewhere}.partial-live"}
