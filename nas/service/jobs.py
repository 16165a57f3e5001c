"""The server's job runner: every search runs in a worker process the server supervises.

A request handler never runs a search. `launch` records the search (validated with the same
config model as the CLI), lets go of its lease, and starts a worker process that runs
`nas search resume ID`, which takes the lease itself. The supervisor looks at the database
every few seconds: a search that is `running` or `cancelling` but whose lease has expired (its
driver died, or the server restarted) is given a new worker. The lease in the search's row
keeps two servers sharing one database from running the same search twice: a second worker
is refused while the first one's lease is fresh.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from nas.config import SearchConfig
from nas.search import launch
from nas.search.lifecycle import lease_holder
from nas.search.records import release_lease
from nas.store import Search, Store

log = logging.getLogger(__name__)
UNFINISHED = ("running", "cancelling")


class JobRunner:
    """Starts and supervises search workers for one database."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        ray_address: str | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.store, self.data_dir, self.ray_address = store, data_dir, ray_address
        self.poll_seconds = poll_seconds
        self.workers: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- searches ---------------------------------------------------------------------------

    def launch(self, config: SearchConfig) -> int:
        """Record a validated search and start its worker; returns its id."""
        config.database = self.store.url
        if self.ray_address and not config.ray_address:
            config.ray_address = self.ray_address
        runner = launch(config, self.store, progress=False)
        search_id = runner.search_id
        release_lease(self.store, search_id, runner.driver)  # the worker takes it
        self.start_worker(search_id)
        return search_id

    def start_worker(self, search_id: int, force: bool = False) -> None:
        with self._lock:
            worker = self.workers.get(search_id)
            if worker is not None and worker.poll() is None:
                return  # already running here
            logs = self.data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            command: Sequence[str] = [
                sys.executable,
                "-m",
                "nas",
                "search",
                "resume",
                str(search_id),
                "--db",
                self.store.url,
                "--no-progress",
                "--json",
                *(["--force"] if force else []),
            ]
            with (logs / f"search-{search_id}.log").open("ab") as log_file:
                self.workers[search_id] = subprocess.Popen(
                    command,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
                )
            log.info("search %d: worker %d started", search_id, self.workers[search_id].pid)

    # ----- supervision ------------------------------------------------------------------------

    def orphans(self) -> list[int]:
        """Unfinished searches that no live driver holds (their driver died)."""
        with self.store.session() as s:
            rows = s.scalars(select(Search).where(Search.status.in_(UNFINISHED))).all()
            return [row.id for row in rows if lease_holder(row) is None]

    def supervise_once(self) -> list[int]:
        """Give every orphaned search a worker; returns the ids restarted."""
        restarted = []
        for search_id in self.orphans():
            worker = self.workers.get(search_id)
            if worker is not None and worker.poll() is None:
                continue  # starting up: its lease is not taken yet
            self.start_worker(search_id)
            restarted.append(search_id)
        return restarted

    def start(self) -> None:
        """Resume what was running before (a restart loses nothing), then keep watching."""
        self.supervise_once()
        self._thread = threading.Thread(target=self._loop, name="nas-jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.supervise_once()
            except Exception:  # the database may be briefly unreachable: try again later
                log.exception("supervising searches failed; retrying")

    def stop(self, terminate_workers: bool = False) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_seconds + 1)
        if terminate_workers:
            for worker in self.workers.values():
                if worker.poll() is None:
                    worker.terminate()
            for worker in self.workers.values():
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()
