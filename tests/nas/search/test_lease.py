"""One driver per search: the lease in `searches` (driver, lease_until), refusal, --force."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import func, select

from nas.errors import LeaseError, LeaseLost, SearchError
from nas.search import COMPLETED, RUNNING, launch, reopen, resume_search
from nas.store import Candidate, Search, Store, lease


def trials(store: Store, search_id: int) -> list[tuple[int, int]]:
    with store.session() as s:
        return sorted(
            s.execute(
                select(Candidate.trial, Candidate.generation).where(
                    Candidate.search_id == search_id
                )
            ).all()
        )


def row_of(store: Store, search_id: int) -> Search:
    with store.session() as s:
        return s.get(Search, search_id)


def test_second_driver_is_refused_and_force_stops_the_first(search_config):
    config = search_config(algorithm={"population": 8, "generations": 5, "seed": 2})
    store = Store(config.config.database)
    second = {}

    def take_over_after_two(outcome):
        if outcome.generations_done == 2:
            with pytest.raises(SearchError, match="is being run by driver"):
                reopen(outcome.search_id, store, progress=False)
            with pytest.raises(SearchError, match="is being run by driver"):
                resume_search(outcome.search_id, store, progress=False)
            second["runner"] = reopen(outcome.search_id, store, force=True, progress=False)

    first = launch(config, store, progress=False, on_generation=take_over_after_two)
    search_id = first.search_id
    with pytest.raises(LeaseLost, match="lease taken by"):
        first.run()
    row = row_of(store, search_id)
    # the first driver stopped at its next generation: no error, no third generation
    assert row.status == RUNNING and row.message == "" and row.finished_at is None
    assert row.generations_done == 2 and len(trials(store, search_id)) == 16
    assert row.driver == second["runner"].driver != first.driver
    outcome = second["runner"].run()
    assert outcome.status == COMPLETED and outcome.generations_done == 5
    stored = trials(store, search_id)
    assert [t for t, _ in stored] == list(range(40))  # contiguous, no duplicate
    assert Counter(g for _, g in stored) == {g: 8 for g in range(5)}
    assert row_of(store, search_id).lease_until is None  # released when it ended


def _stopped_search(search_config, **algorithm):
    config = search_config(algorithm={"population": 4, "generations": 3, **algorithm})
    store = Store(config.config.database)
    runner = launch(config, store, progress=False)
    partial = runner.run(stop_after_generations=1)
    return store, partial.search_id


def _set_lease(store, search_id, driver, seconds_from_now):
    with store.session() as s:
        row = s.get(Search, search_id)
        row.driver = driver
        row.lease_until = lease.now() + timedelta(seconds=seconds_from_now)


def test_a_lease_held_on_another_host_is_honoured_until_it_expires(search_config):
    store, search_id = _stopped_search(search_config)
    _set_lease(store, search_id, "other-host:4242:cafe", 60)
    with pytest.raises(SearchError, match="other-host:4242:cafe"):
        resume_search(search_id, store, progress=False)
    assert row_of(store, search_id).driver == "other-host:4242:cafe"  # nothing written
    _set_lease(store, search_id, "other-host:4242:cafe", -1)  # it stopped renewing
    assert resume_search(search_id, store, progress=False).status == COMPLETED


def test_a_dead_driver_on_this_host_holds_nothing(search_config):
    store, search_id = _stopped_search(search_config)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _set_lease(store, search_id, f"{socket.gethostname()}:{dead.pid}:0000", 60)
    assert resume_search(search_id, store, progress=False).status == COMPLETED


def test_the_heartbeat_renews_the_lease_during_a_long_generation(search_config, monkeypatch):
    monkeypatch.setenv(lease.LEASE_ENV, "0.4")
    config = search_config(algorithm={"population": 4, "generations": 2})
    store = Store(config.config.database)
    fresh = []

    def slow(outcome):
        time.sleep(1.0)  # longer than the lease: only the heartbeat keeps it
        row = row_of(store, outcome.search_id)
        fresh.append(lease.aware(row.lease_until) > lease.now())

    outcome = launch(config, store, progress=False, on_generation=slow).run()
    assert outcome.status == COMPLETED and fresh == [True, True]
    monkeypatch.setenv(lease.LEASE_ENV, "soon")
    with pytest.raises(LeaseError, match="NAS_LEASE_SECONDS"):
        lease.lease_seconds()


def test_force_takes_over_a_driver_in_another_process(search_config, tmp_path):
    config = search_config(algorithm={"population": 8, "generations": 400, "seed": 5})
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config.config.model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "search", "launch", str(path), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    store = Store(config.config.database)
    deadline, done = time.time() + 120, 0
    while time.time() < deadline and done < 2:
        time.sleep(0.2)
        with store.session() as s:
            done = s.scalar(select(func.max(Search.generations_done))) or 0
        assert proc.poll() is None, proc.stderr.read().decode()
    search_id = row_of_any(store)
    with pytest.raises(SearchError, match="is being run by driver"):
        reopen(search_id, store, progress=False)
    runner = reopen(search_id, store, force=True, progress=False)
    _, stderr = proc.communicate(timeout=120)  # it stops at its next generation
    assert proc.returncode == 2 and "lease taken by" in stderr.decode(), stderr.decode()
    taken_at = row_of(store, search_id).generations_done
    outcome = runner.run(stop_after_generations=taken_at + 2)
    assert outcome.status == RUNNING and outcome.generations_done == taken_at + 2
    row = row_of(store, search_id)
    assert row.status == RUNNING and not row.message.startswith("failed")
    assert [t for t, _ in trials(store, search_id)] == list(range(8 * (taken_at + 2)))


def row_of_any(store: Store) -> int:
    with store.session() as s:
        return s.scalars(select(Search.id)).one()
