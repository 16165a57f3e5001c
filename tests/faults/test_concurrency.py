"""Four searches launched at the same instant on one new database: all complete, each with
exactly its own candidates."""

from __future__ import annotations

import pytest

from tests.conftest import needs_postgres
from tests.faults.harness import check_concurrent, launch_at_once


def _raws(raw_config, url):
    return [
        raw_config(
            name=f"concurrent-{i}",
            database=url,
            algorithm={"population": 4 + 2 * i, "generations": 3 + i, "seed": i},
        )
        for i in range(4)
    ]


def test_four_launches_at_once_on_a_new_sqlite_file(raw_config, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'nas.db'}"
    raws = _raws(raw_config, url)
    problems = check_concurrent(url, raws, launch_at_once(url, raws, tmp_path))
    assert not problems, problems


@pytest.mark.slow
@needs_postgres
def test_four_launches_at_once_on_a_new_postgresql_database(raw_config, tmp_path, postgres_url):
    raws = _raws(raw_config, postgres_url)
    problems = check_concurrent(postgres_url, raws, launch_at_once(postgres_url, raws, tmp_path))
    assert not problems, problems
