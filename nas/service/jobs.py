"""The server's job runner: every search and export runs in a worker process it supervises.

A request handler never runs a search: it records it (`nas.core.record`, the CLI's own
path: checked, stored, leased to nobody; no evaluator, no Ray), and `start_worker` starts a
worker process that runs `nas search resume ID`, which takes the lease and builds the
evaluators (a pool of Ray actors, where the search asks for one) in its own process. The
supervisor looks at the database every few seconds: a search that is `running` or
`cancelling` but whose lease nobody holds (its driver died, the server restarted, or no
worker has taken it yet) is given a new worker. The lease in the search's row
keeps two servers sharing one database from running the same search twice: a second worker
is refused while the first one's lease is fresh. An export is a job the same way: queued in
SQL, run by `nas export-job ID`, which takes the export row's lease.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from nas.errors import ServeError, UserError, os_reason
from nas.store import Export, Search, Store, lease
from nas.store.status import EXPORT_UNFINISHED, SEARCH_UNFINISHED

log = logging.getLogger(__name__)


class JobRunner:
    """Starts and supervises search workers for one database."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        poll_seconds: float = 5.0,
    ) -> None:
        self.store, self.data_dir = store, data_dir
        self.poll_seconds = poll_seconds
        self.workers: dict[tuple[str, int], subprocess.Popen] = {}  # ("search", id), ("export", id)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_data_dir(self) -> None:
        """ServeError unless the folders the jobs write (their logs, the exports) can be
        created and written: checked before serving, as every launch and export writes there
        (root writes through a folder's permissions, so this tries a file, not os.access)."""
        # the folder itself first, so that an error names the first path that fails
        for folder in (self.data_dir, self.data_dir / "logs", self.data_dir / "exports"):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as err:
                where = f" ({err.filename})" if err.filename else ""
                raise ServeError(
                    f"cannot write the data folder {self.data_dir}: {os_reason(err)}{where}"
                ) from None

    # ----- searches ---------------------------------------------------------------------------

    def start_worker(self, search_id: int, force: bool = False) -> None:
        """A worker running `nas search resume ID` (unless one of this server runs it)."""
        command = ["search", "resume", str(search_id), "--no-progress", "--json"]
        self._spawn(("search", search_id), [*command, *(["--force"] if force else [])])

    # ----- exports ----------------------------------------------------------------------------

    def start_export_worker(self, export_id: int) -> None:
        self._spawn(("export", export_id), ["export-job", str(export_id)])

    # ----- worker processes -------------------------------------------------------------------

    def _spawn(self, job: tuple[str, int], arguments: Sequence[str]) -> None:
        """Start `python -m nas ARGUMENTS --db URL` for a job, unless this server already
        runs a live worker for it. Its output goes to DATA_DIR/logs/KIND-ID.log."""
        with self._lock:
            worker = self.workers.get(job)
            if worker is not None and worker.poll() is None:
                return
            logs = self.data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "nas", *arguments, "--db", self.store.url]
            with (logs / f"{job[0]}-{job[1]}.log").open("ab") as log_file:
                self.workers[job] = subprocess.Popen(
                    command,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
                )
            log.info("%s %d: worker %d started", *job, self.workers[job].pid)

    def worker(self, kind: str, job_id: int) -> subprocess.Popen | None:
        """This server's worker process for a job, if it started one."""
        return self.workers.get((kind, job_id))

    # ----- supervision ------------------------------------------------------------------------

    def orphans(self) -> list[tuple[str, int]]:
        """Unfinished jobs (searches and exports) whose lease no live worker holds: their
        worker died, or the server stopped before one took them."""
        with self.store.session() as s:
            searches = s.scalars(select(Search).where(Search.status.in_(SEARCH_UNFINISHED))).all()
            exports = s.scalars(select(Export).where(Export.status.in_(EXPORT_UNFINISHED))).all()
            return [("search", r.id) for r in searches if lease.holder(r) is None] + [
                ("export", r.id) for r in exports if lease.holder(r) is None
            ]

    def reap(self) -> None:
        """Forget the workers that have exited (collecting their exit status, so that no
        finished worker lingers as a zombie process)."""
        with self._lock:
            for job, worker in list(self.workers.items()):
                if worker.poll() is not None:
                    log.info("%s %d: worker exited with %d", *job, worker.returncode)
                    del self.workers[job]

    def supervise_once(self) -> list[tuple[str, int]]:
        """Give every orphaned job a worker; returns the jobs restarted."""
        self.reap()
        restarted = []
        for job in self.orphans():
            worker = self.workers.get(job)
            if worker is not None and worker.poll() is None:
                continue  # starting up: its lease is not taken yet
            kind, job_id = job
            if kind == "search":
                self.start_worker(job_id)
            else:
                self.start_export_worker(job_id)
            restarted.append(job)
        return restarted

    def start(self) -> None:
        """Resume what was running before (a restart loses nothing), then keep watching."""
        self.supervise_once()
        self._thread = threading.Thread(target=self._loop, name="nas-jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # the database or the data folder may fail for a while (unreachable, disk full or
        # read-only): try again each poll, but log each distinct fault once, not every poll
        fault: str | None = None
        while not self._stop.wait(self.poll_seconds):
            try:
                self.supervise_once()
            except Exception as err:
                seen, fault = fault, f"{type(err).__name__}: {err}"
                if fault != seen:
                    log.error(
                        "supervising jobs failed, retrying every %g s (logged again when the "
                        "error changes): %s",
                        self.poll_seconds,
                        fault,
                        # a fault of the database or the disk says all in its message; any
                        # other error is a bug, whose traceback is logged (once)
                        exc_info=not isinstance(err, OSError | UserError),
                    )
            else:
                if fault is not None:
                    log.warning("supervising jobs works again (after: %s)", fault)
                    fault = None

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
