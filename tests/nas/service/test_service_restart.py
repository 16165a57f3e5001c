"""`nas serve` as real processes: a server killed with SIGKILL, and its worker with it (a
machine or container that goes away), loses nothing when it starts again; two servers
sharing one database never run one search twice.

Every server is the leader of a new process group, which its workers join; the `servers`
fixture kills each group at teardown, whatever the test did. Searches are 16 x 60: about
5 s of work, so one is still running a few seconds after its first generation is stored.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from nas.store import Candidate, Search, Store
from nas.store.lease import aware, now
from tests.conftest import needs_postgres
from tests.faults.harness import ServerProcess as Server
from tests.faults.harness import start_server

LEASE_SECONDS = 3  # an expired lease is seen within seconds, not the default minute
POPULATION, GENERATIONS = 16, 60


@pytest.fixture
def backend() -> str:
    return "sqlite"  # a test parametrized on `backend` overrides this


@pytest.fixture
def database(backend, tmp_path, request) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.fixture
def servers(database, tmp_path) -> Iterator[Callable[[str], Server]]:
    """`start(name)`: a `nas serve` on `database` with the data folder tmp_path/name, once
    it answers. Set up after the database, so torn down (killed) before it is dropped."""
    started: list[Server] = []

    def start(name: str) -> Server:
        data_dir = tmp_path / name
        data_dir.mkdir(exist_ok=True)
        log = data_dir / f"server-{len(started)}.log"
        server = start_server(database, data_dir, log, NAS_LEASE_SECONDS=LEASE_SECONDS)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_group()


def row_of(store: Store, search_id: int) -> Search:
    with store.session() as s:
        row = s.get(Search, search_id)
        s.expunge(row)
        return row


def gone(pid: int, seconds: float = 10) -> bool:
    """The process has ended: no such pid, or a zombie not yet reaped (its parent, the
    server, was killed too; whoever adopts it reaps it later)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def wait_for(predicate: Callable[[], bool], seconds: float, what: str, *servers: Server) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    logs = "\n".join(s.tail() for s in servers)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{logs}")


def launch_and_let_it_run(server: Server, raw_config, store: Store) -> int:
    """POST a search big enough to outlast the test's kill, and wait until it is running
    with a generation or more stored (by the server's worker)."""
    raw = raw_config(algorithm={"population": POPULATION, "generations": GENERATIONS, "seed": 1})
    status, created = server.request("POST", "/searches", {**raw, "database": store.url})
    assert status == 201, created
    search_id = created["id"]

    def some_stored() -> bool:
        row = row_of(store, search_id)
        assert row.status == "running", (row.status, row.message)
        return row.generations_done >= 1

    wait_for(some_stored, 60, "a first stored generation", server)
    return search_id


def kill_server_and_worker(server: Server, store: Store, search_id: int) -> Search:
    """SIGKILL the server's process group mid-search; the row as the kill left it."""
    driver = row_of(store, search_id).driver  # the worker's host:pid:token
    server.kill_group()
    assert gone(int(driver.split(":")[1])), f"worker {driver} outlived its server's group"
    row = row_of(store, search_id)
    assert row.status == "running" and 1 <= row.generations_done < GENERATIONS, (
        row.status,
        row.generations_done,
    )
    return row


def assert_completed_whole_and_once(store: Store, search_id: int) -> None:
    """Completed, every generation stored, trials exactly 0..N-1, none twice."""
    row = row_of(store, search_id)
    assert row.status == "completed", (row.status, row.message)
    assert row.generations_done == row.generations_total == GENERATIONS
    with store.session() as s:
        mine = Candidate.search_id == search_id
        trials = s.scalars(select(Candidate.trial).where(mine)).all()
        pairs = select(Candidate.search_id, Candidate.trial).where(mine).distinct().subquery()
        distinct = s.scalar(select(func.count()).select_from(pairs))
    n = POPULATION * GENERATIONS
    duplicated = [t for t, c in Counter(trials).items() if c > 1]
    assert not duplicated, f"trials stored twice: {duplicated[:10]}"
    assert sorted(trials) == list(range(n)), f"{len(trials)} trials, expected 0..{n - 1}"
    assert distinct == len(trials) == row.candidates_done == n


def completions_reported(*data_dirs: Path) -> int:
    """How many worker processes printed the search's outcome as completed."""
    count = 0
    for data_dir in data_dirs:
        for log in (data_dir / "logs").glob("search-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and json.loads(line).get("status") == "completed":
                    count += 1
    return count


PG = needs_postgres
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("backend", "old_driver"),
    [
        ("sqlite", "this-host"),
        pytest.param("postgresql", "other-host", marks=PG),
        pytest.param("sqlite", "other-host", marks=SLOW),
        pytest.param("postgresql", "this-host", marks=[PG, SLOW]),
    ],
)
def test_a_server_killed_with_its_worker_resumes_the_search_on_restart(
    backend, old_driver, database, servers, raw_config
):
    """`this-host`: the dead worker's pid shows its lease is void at once. `other-host`:
    the row names a driver on another machine, whose lease must run out first."""
    store = Store(database)
    first = servers("service")
    search_id = launch_and_let_it_run(first, raw_config, store)
    killed = kill_server_and_worker(first, store, search_id)
    if old_driver == "other-host":
        lease = now() + timedelta(seconds=LEASE_SECONDS)
        with store.session() as s:
            s.execute(
                update(Search)
                .where(Search.id == search_id)
                .values(driver="elsewhere:1:dead", lease_until=lease)
            )
    lease_until = aware(row_of(store, search_id).lease_until)

    second = servers("service")  # the same data folder, as a restarted service has
    taken: list[datetime] = []

    def taken_over() -> bool:
        row = row_of(store, search_id)
        if row.driver not in (killed.driver, "elsewhere:1:dead"):
            taken.append(now())
        return bool(taken)

    wait_for(taken_over, 60, "a new worker to take the search", second)
    if old_driver == "other-host":  # a lease held elsewhere is honoured until it runs out
        assert taken[0] >= lease_until
    wait_for(lambda: row_of(store, search_id).status != "running", 120, "the end", second)
    assert_completed_whole_and_once(store, search_id)
    status, info = second.request("GET", f"/searches/{search_id}")
    assert status == 200 and info["status"] == "completed"
    assert info["generations"] == f"{GENERATIONS}/{GENERATIONS}"


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=PG), pytest.param("sqlite", marks=SLOW)]
)
def test_two_servers_sharing_a_database_never_run_a_search_twice(
    backend, database, servers, raw_config, tmp_path
):
    """Server a launches a search and is killed with its worker; a restarts while b keeps
    supervising: both see the orphaned search at about the same time and may both start a
    worker, but the lease lets one of them run it, once, to the end."""
    store = Store(database)
    a = servers("service-a")
    b = servers("service-b")
    search_id = launch_and_let_it_run(a, raw_config, store)
    kill_server_and_worker(a, store, search_id)
    a = servers("service-a")  # supervises at its start; b every 5 s
    wait_for(lambda: row_of(store, search_id).status != "running", 180, "the end", a, b)
    assert_completed_whole_and_once(store, search_id)
    # the killed worker never reported; of the workers started since, exactly one finished
    assert completions_reported(tmp_path / "service-a", tmp_path / "service-b") == 1
