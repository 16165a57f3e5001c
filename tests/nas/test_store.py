"""The SQL store: migrations, errors, and a whole search against a real PostgreSQL server.

CI (.ci/run) starts a throwaway PostgreSQL 15 and sets NAS_TEST_POSTGRES_URL to it.
"""

from __future__ import annotations

import os
import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from nas.pareto import pareto_front
from nas.search import COMPLETED, launch_search, resume_search
from nas.store import Store, StoreError, alembic_config

POSTGRES = os.environ.get("NAS_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="set NAS_TEST_POSTGRES_URL (.ci/run starts a server)"
)


def test_new_database_gets_the_schema(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a' / 'nas.db'}")
    assert {"searches", "candidates", "metrics", "supernets", "predictors", "exports"} <= set(
        store.tables()
    )
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    Store(store.url)  # reopening is a no-op migration


def test_results_in_an_older_schema_survive_the_upgrade(tmp_path, search_config):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url, migrate=False)
    cfg = alembic_config(old.url)
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")  # the first released schema: top1 NOT NULL
    config = search_config(database=url, algorithm={"population": 8, "generations": 2})
    outcome = launch_search(config, old, progress=False)
    before = pareto_front(old, outcome.search_id)
    old.dispose()
    store = Store(url)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        assert conn.execute(text("SELECT count(*) FROM candidates")).scalar() == 16
        assert conn.execute(text("SELECT count(*) FROM metrics")).scalar() > 16
    after = pareto_front(store, outcome.search_id)
    assert [c.arch_id for c in after.front] == [c.arch_id for c in before.front]
    top1 = {c["name"]: c for c in inspect(store.engine).get_columns("candidates")}["top1"]
    assert top1["nullable"]  # generator searches store no top-1
    store.dispose()


def test_database_newer_than_the_code_is_refused(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StoreError, match="newer schema"):
        Store(store.url)


def test_unreachable_and_invalid_databases():
    with pytest.raises(StoreError, match=r"cannot connect to database .*:\*\*\*@127\.0\.0\.1:1"):
        Store("postgresql://user:secret@127.0.0.1:1/nas")
    with pytest.raises(StoreError, match="invalid database URL"):
        Store("::not a url::")
    with pytest.raises(StoreError, match="cannot use database"):
        Store("nosuchdb://x")


@pytest.fixture
def postgres_url():
    """A fresh database on the CI server, dropped afterwards."""
    name = f"nas_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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
