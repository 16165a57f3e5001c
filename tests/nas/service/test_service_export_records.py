"""Every export is recorded alike, whichever door made it: a `nas export` folder is listed
and served by the HTTP API as its own jobs' folders are (files with their bytes and SHA-256,
times in order), and a file deleted or replaced since is a clear 410, not an empty list. A
running export job records its phase; GET /searches/ID/export-formats says what an export
of the search can write."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from nas.cli import app as cli
from nas.export import export_candidate, format_choices, queue_export, run_export_job
from nas.export.formats import FORMATS, INT8_FORMATS
from nas.service.app import create_app
from nas.store import Export


def test_a_cli_export_is_listed_and_served_by_the_api_with_its_files(searched, tmp_path):
    store, search_id, candidate = searched
    out = tmp_path / "cli-export"
    args = ["export", str(search_id), str(candidate), "--format", "state_dict"]
    ran = CliRunner().invoke(cli, [*args, "--out", str(out), "--db", store.url])
    assert ran.exit_code == 0, ran.output
    client = TestClient(create_app(store, tmp_path / "service", supervise=False))

    info = client.get("/exports/1").json()
    created, finished = (datetime.fromisoformat(info[k]) for k in ("created_at", "finished_at"))
    assert info["status"] == "completed" and created < finished
    assert info["seconds"] == pytest.approx((finished - created).total_seconds(), abs=1e-3)
    assert info["phase"] == ""
    files = {f["name"]: f for f in info["files"]}
    assert set(files) == {"model.state_dict.pt", "model_card.json"}
    for name, entry in files.items():
        assert entry["bytes"] == (out / name).stat().st_size and entry["available"]
        download = client.get(entry["url"])
        assert download.status_code == 200, download.text
        assert hashlib.sha256(download.content).hexdigest() == entry["sha256"]
    listed = client.get("/exports").json()
    assert listed["total"] == 1 and listed["items"][0]["files"] == info["files"]

    # a row of an older database (before migration 0007) lists the files its card names
    with store.session() as s:
        kept = s.get(Export, 1).files
        s.execute(update(Export).values(files=None))
    assert client.get("/exports/1").json()["files"] == info["files"]
    with store.session() as s:
        s.execute(update(Export).values(files=kept))

    # another export into the same folder (as a rerun of the demo) replaces the file: the
    # first export's file is no longer its own, and is not served as if it were
    (out / "model.state_dict.pt").write_bytes(b"other bytes")
    (out / "model_card.json").unlink()
    replaced = client.get(files["model.state_dict.pt"]["url"])
    assert replaced.status_code == 410 and "replaced since" in replaced.json()["detail"]
    deleted = client.get(files["model_card.json"]["url"])
    assert deleted.status_code == 410 and "deleted or moved" in deleted.json()["detail"]
    assert str(out) not in deleted.json()["detail"]  # no server path
    after = client.get("/exports/1").json()
    assert [f["available"] for f in after["files"]] == [False, False]
    assert client.get("/exports/1/files/model.onnx").status_code == 404  # never written


def test_an_export_reports_its_phases_and_a_job_records_them(searched, tmp_path, monkeypatch):
    store, search_id, candidate = searched
    seen: list[str] = []
    export_candidate(store, search_id, candidate, ["state_dict"], tmp_path / "a", phase=seen.append)
    assert seen == ["loading the candidate", "writing state_dict", "writing the model card"]

    # the job's worker writes each phase into its row, and clears it when done
    import nas.export.jobs as jobs

    phases: list[str] = []

    def recording(*args, phase, **kwargs):
        def seen_in_the_row(text: str) -> None:
            phase(text)
            with store.session() as s:
                phases.append(s.get(Export, export_id).phase)

        return export_candidate(*args, phase=seen_in_the_row, **kwargs)

    monkeypatch.setattr(jobs, "export_candidate", recording)
    export_id = queue_export(store, search_id, candidate, ["state_dict"], tmp_path / "service")
    assert run_export_job(store, export_id) == "completed"
    assert phases == ["loading the candidate", "writing state_dict", "writing the model card"]
    with store.session() as s:
        row = s.get(Export, export_id)
        assert row.phase == "" and [f["name"] for f in row.files] == [
            "model.state_dict.pt",
            "model_card.json",
        ]


def test_the_export_formats_of_a_search_are_its_familys(searched, tmp_path):
    store, search_id, _ = searched
    client = TestClient(create_app(store, tmp_path / "service", supervise=False))
    got = client.get(f"/searches/{search_id}/export-formats")
    assert got.status_code == 200, got.text
    offered = got.json()
    names = [f["name"] for f in offered["formats"]]
    assert names == list(FORMATS)  # a classifier: every format, int8 ones included
    # an MCU target (int8) and an H100 at fp16: their files are among the defaults
    assert {"onnx_int8", "onnx_fp16"} <= set(offered["default"])
    assert {f["name"] for f in offered["formats"] if f["default"]} == set(offered["default"])
    assert offered["quantize"] == ["int8"]
    for entry in offered["formats"]:
        assert entry["available"] == (entry["unavailable"] is None)
    assert client.get("/searches/999/export-formats").status_code == 404


def test_a_family_that_cannot_quantize_is_offered_no_int8_format(search_config, searched):
    import copy

    from nas.export import search_family

    store, search_id, _ = searched
    family = copy.copy(search_family(store, search_id))
    family.quantizes_int8 = False  # as the GAN family
    offered = format_choices(search_config().config, family)
    assert not set(INT8_FORMATS) & {f["name"] for f in offered["formats"]}
    assert offered["quantize"] == [] and "onnx_int8" in offered["skipped"]
