"""The SQL store: migrations, errors, and a whole search against a real PostgreSQL server.

CI (.ci/run) starts a throwaway PostgreSQL 15 and sets NAS_TEST_POSTGRES_URL to it.
"""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from nas.pareto import load_candidates, pareto_front
from nas.search import COMPLETED, launch_search, resume_search
from nas.store import Export, Search, Store, StoreError, alembic_config
from tests.conftest import POSTGRES, needs_postgres

HEAD = "0007"


def test_new_database_gets_the_schema(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a' / 'nas.db'}")
    assert {"searches", "candidates", "metrics", "supernets", "predictors", "exports"} <= set(
        store.tables()
    )
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    Store(store.url)  # reopening is a no-op migration


def _old_search(conn, with_verified: bool) -> None:
    """Rows as the schema-0001/0002 code wrote them: top-1 in candidates' own columns."""
    conn.execute(
        text(
            "INSERT INTO supernets (id, sha256, path, space, created_at) "
            "VALUES (1, 'ab', 'x/supernet.pt', 'mnist-mbv3', '2026-12-01')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO searches (id, name, status, config, space, supernet_id, "
            "generations_total, generations_done, candidates_done, evaluations_done, "
            "feasible_done, best, message, driver, seconds, created_at, updated_at) VALUES "
            "(1, 'old', 'completed', :config, 'mnist-mbv3', 1, 1, 1, 3, 3, 3, '{}', '', '', "
            "1.0, '2026-12-01', '2026-12-01')"
        ),
        {"config": json.dumps(OLD_CONFIG)},
    )
    for trial, (top1, latency) in enumerate([(0.9, 3.0), (0.8, 2.0), (0.7, 2.5)]):
        conn.execute(
            text(
                "INSERT INTO candidates (id, search_id, trial, generation, arch_id, arch, params, "
                "feasible, violation, top1, top1_source, top1_measured, created_at) VALUES "
                "(:id, 1, :trial, 0, :aid, '{}', '{}', 1, 0.0, :top1, 'predictor', :measured, "
                "'2026-12-01')"
            ),
            {
                "id": trial + 1,
                "trial": trial,
                "aid": f"arch{trial}",
                "top1": top1,
                "measured": top1 - 0.01 if with_verified and trial == 0 else None,
            },
        )
        conn.execute(
            text(
                "INSERT INTO metrics (search_id, candidate_id, device, name, value) VALUES "
                "(1, :cid, 'stm32f746', 'latency_ms', :v)"
            ),
            {"cid": trial + 1, "v": latency},
        )


OLD_CONFIG = {
    "name": "old",
    "supernet": "x/supernet.pt",
    "objectives": [
        {"metric": "top1", "goal": "maximize"},
        {"metric": "stm32f746.latency_ms", "goal": "minimize"},
    ],
    "targets": {"stm32f746": {"limits": {}, "batch": 1, "options": {}}},
}


@pytest.mark.parametrize("revision", ["0001", "0002", "0003"])
def test_results_in_an_older_schema_survive_the_upgrade(tmp_path, revision):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url, migrate=False)
    cfg = alembic_config(old.url)
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002" if revision == "0003" else revision)  # 0001: top1 NOT NULL
        _old_search(conn, with_verified=True)
        conn.execute(  # an export written by `nas export` of that time
            text(
                "INSERT INTO exports (search_id, candidate_id, formats, out_dir, card, created_at) "
                "VALUES (1, 1, '[\"onnx\"]', 'out', '{\"arch\": {}}', '2026-11-01')"
            )
        )
    if revision == "0003":  # rows of the 0002 code, moved into metrics; no lease column yet
        with old.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # as Store.migrate does
            conn.commit()
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0003")
    old.dispose()
    store = Store(url)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert conn.execute(text("SELECT count(*) FROM candidates")).scalar() == 3
        # 3 latencies, 3 top-1 values and one verified top-1: nothing lost, nothing doubled
        assert conn.execute(text("SELECT count(*) FROM metrics")).scalar() == 7
    columns = {c["name"] for c in inspect(store.engine).get_columns("candidates")}
    assert "quality_source" in columns and not {"top1", "top1_measured"} & columns
    rows = load_candidates(store, 1)
    assert [c.metrics["top1"] for c in rows] == [0.9, 0.8, 0.7]
    assert rows[0].top1_measured == pytest.approx(0.89) and rows[1].top1_measured is None
    front = pareto_front(store, 1)  # (0.9, 3.0) and (0.8, 2.0); (0.7, 2.5) is dominated
    assert [c.trial for c in front.front] == [0, 1]
    with store.session() as s:  # 0004: the old search holds no lease, and takes one
        row = s.get(Search, 1)
        assert row.lease_until is None and row.driver == ""
        row.lease_until = datetime(2026, 12, 2, tzinfo=UTC)
    with store.session() as s:
        assert s.get(Search, 1).lease_until.replace(tzinfo=UTC) == datetime(2026, 12, 2, tzinfo=UTC)
        # 0005: an export of the old code was written whole: it is a completed job
        old_export = s.get(Export, 1)
        assert (old_export.status, old_export.message, old_export.card) == (
            "completed",
            "",
            {"arch": {}},
        )
    store.dispose()


def test_database_newer_than_the_code_is_refused(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StoreError, match="newer schema"):
        Store(store.url)


def test_unreachable_and_invalid_databases(tmp_path):
    with pytest.raises(StoreError, match=r"cannot connect to database .*:\*\*\*@127\.0\.0\.1:1"):
        Store("postgresql://user:secret@127.0.0.1:1/nas")
    with pytest.raises(StoreError, match="invalid database URL"):
        Store("::not a url::")
    with pytest.raises(StoreError, match="cannot use database"):
        Store("nosuchdb://x")
    with pytest.raises(StoreError, match=r"invalid database URL .*port is not a number"):
        Store("postgresql://u@localhost:abc/db")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n" * 10)
    with pytest.raises(StoreError) as err:
        Store(f"sqlite:///{text_file}")
    assert "file is not a database" in str(err.value) and "\n" not in str(err.value)
    assert text_file.read_text() == "not a database\n" * 10


def test_reading_a_missing_sqlite_file_does_not_create_it(tmp_path):
    missing = tmp_path / "runs" / "nas.db"
    with pytest.raises(StoreError, match=f"no database at {missing}"):
        Store(f"sqlite:///{missing}", create=False)
    assert not missing.exists() and not missing.parent.exists()
    Store(f"sqlite:///{missing}").dispose()  # the default creates it (launch)
    Store(f"sqlite:///{missing}", create=False).dispose()  # and then it opens


def test_read_commands_refuse_a_missing_database(tmp_path):
    from typer.testing import CliRunner

    from nas import core
    from nas.cli import app

    missing = tmp_path / "none.db"
    url = f"sqlite:///{missing}"
    for call in (
        lambda: core.list_searches(url),
        lambda: core.get_search(1, url),
        lambda: core.query_front(1, db=url),
        lambda: core.export(1, 0, out=tmp_path / "out", db=url),
    ):
        with pytest.raises(StoreError, match="no database at"):
            call()
    for args in (["search", "list"], ["search", "show", "1"], ["pareto", "1"]):
        result = CliRunner().invoke(app, [*args, "--db", url])
        assert result.exit_code == 2 and "no database at" in result.output, result.output
    assert not missing.exists()


def _open_new_databases(urls: list[str], barrier, results) -> None:
    """Open each new database at the same instant as the other processes do."""
    for url in urls:
        barrier.wait(timeout=120)
        try:
            store = Store(url)
            with store.engine.connect() as conn:
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            results.put((url, "ok", version))
            store.dispose()
        except Exception as err:  # reported to the parent, which fails the test
            results.put((url, "error", f"{type(err).__name__}: {err}"))


def _race(urls: list[str], processes: int = 3) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_open_new_databases, args=(urls, barrier, results))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=180) for _ in range(processes * len(urls))]
    for p in procs:
        p.join(timeout=60)
    assert sorted(outcomes) == sorted((url, "ok", HEAD) for url in urls for _ in procs), outcomes
    assert all(p.exitcode == 0 for p in procs)


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    _race([f"sqlite:///{tmp_path / f'new-{attempt}' / 'nas.db'}" for attempt in range(5)])
    assert (tmp_path / "new-0" / "nas.db.lock").exists()  # the lock file beside the database


@needs_postgres
def test_processes_opening_a_new_postgresql_database_at_once(postgres_url):
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    urls = [postgres_url]
    with admin.connect() as conn:
        for attempt in range(1, 4):
            conn.execute(text(f'CREATE DATABASE "{postgres_url.rsplit("/", 1)[1]}_{attempt}"'))
            urls.append(f"{postgres_url}_{attempt}")
    try:
        _race(urls)
    finally:
        with admin.connect() as conn:
            for url in urls[1:]:
                conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
                )
        admin.dispose()


@needs_postgres
def test_search_on_postgresql(postgres_url, search_config):
    config = search_config(database=postgres_url, algorithm={"population": 8, "generations": 4})
    store = Store(postgres_url)
    assert "candidates" in store.tables()
    partial = launch_search(config, store, progress=False, stop_after_generations=2)
    outcome = resume_search(partial.search_id, store, progress=False)
    assert outcome.status == COMPLETED and outcome.candidates == 32
    front = pareto_front(store, outcome.search_id, where=["stm32f746.peak_sram_kb<=100"])
    assert front.front and all(c.feasible for c in front.front)
    store.dispose()
