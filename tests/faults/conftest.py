"""Fixtures of the fault suite: raw search configs on the tiny supernet, a fresh PostgreSQL
database when $NAS_TEST_POSTGRES_URL names a server (the pattern of tests/nas/test_store.py)."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

POSTGRES = os.environ.get("NAS_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="set NAS_TEST_POSTGRES_URL (.ci/run starts a server)"
)


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


@pytest.fixture
def raw_config(tmp_path, tiny_supernet, tiny_predictor):
    """A factory of raw (unparsed) search configs, the search_config fixture's fields."""

    def make(**overrides):
        raw = {
            "name": "fault-search",
            "supernet": str(tiny_supernet.path),
            "predictor": tiny_predictor,
            "targets": {
                "stm32f746": {"peak_sram_kb": 12, "flash_kb": 600},
                "h100-sxm": {"latency_ms": 0.7, "batch": 64, "precision": "fp16"},
            },
            "algorithm": {"population": 8, "generations": 3, "seed": 0},
            "evaluation": "predictor",
            "database": f"sqlite:///{tmp_path / 'nas.db'}",
        }
        raw.update(overrides)
        return raw

    return make
