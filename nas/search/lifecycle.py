"""A search's life: recorded, taken and run by one driver, cancelled, resumed after its
driver died.

`record` stores a checked search leased to nobody: no evaluator is built and no Ray started,
so a server records a search in its request and leaves the rest to a worker process. A
driver then takes the search (`reopen`: the lease by compare-and-set) and builds its
evaluators when it runs: `launch` records and takes it in this process (the CLI), a worker
takes a recorded or orphaned search with `nas search resume ID`.

A driver killed at any moment (kill -9) loses at most the generation in flight: `resume`
rebuilds the study from the stored rows and continues, with the files recorded at launch (by
their absolute paths; another path may be given, and any file whose SHA-256 differs is
refused). `cancel` asks a running driver to stop after its current generation.

One driver at a time: the driver holds the search's lease (nas.store.lease: `searches.driver`,
its host:pid:token, and `lease_until`), renewed at start, by a heartbeat and in every write, for
$NAS_LEASE_SECONDS (default 60 s). `resume` refuses while another driver's lease is fresh, on
any host (on this host, a driver whose process is gone holds nothing); `force` takes the lease
over, and the old driver stops at its next write without writing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nas.errors import SearchError
from nas.resources import CheckedSearch, check_search_config
from nas.search import records
from nas.search.active import ActiveRunner
from nas.search.runner import SearchRunner
from nas.search.state import CANCELLED, CANCELLING, FAILED, RUNNING, Outcome
from nas.store import Search, Store, lease
from nas.store.status import SEARCH_FINAL

log = logging.getLogger(__name__)
RUNNER_OPTIONS = ("pool", "progress", "on_generation")


def _unfinished(session: Any, search_id: int, store: Store) -> Search:
    """The search's row; NotFoundError if there is none, SearchError if it has ended."""
    row = store.search(session, search_id)
    if row.status in SEARCH_FINAL:
        raise SearchError(f"search {search_id} is already {row.status}")
    return row


def _resumable(session: Any, search_id: int, store: Store) -> Search:
    """The search's row, unless it completed or proved infeasible: a running search whose
    driver died, a failed one and a cancelled one can each go on where they stopped."""
    row = store.search(session, search_id)
    if row.status in SEARCH_FINAL and row.status != CANCELLED:
        raise SearchError(f"search {search_id} is already {row.status}")
    return row


def _refuse(search_id: int, holder: str, until: Any) -> SearchError:
    when = lease.aware(until)
    runs = f" (its lease runs until {when:%Y-%m-%d %H:%M:%S} UTC unless renewed)" if when else ""
    return SearchError(
        f"search {search_id} is being run by driver {holder}{runs}; stop it first, or pass "
        "--force to take the search over (that driver then stops at its next generation)"
    )


def _recorded_path(search_id: int, what: str, option: str, recorded: records.RecordedFile) -> str:
    if not Path(recorded.path).is_file():
        raise SearchError(
            f"the {what} search {search_id} was launched with, {recorded.path}, is not there; "
            f"pass {option} PATH to a copy of it (SHA-256 {recorded.sha256[:12]}...)"
        )
    return recorded.path


def record(checked: CheckedSearch, store: Store) -> int:
    """Record a checked search, leased to nobody, and return its id: no evaluator is built
    and no Ray is started here. A driver then takes it: this process (`launch`), or a
    worker running `nas search resume ID` (the service's)."""
    search_id = records.create_search(store, checked.config, checked.resources)
    log.info("search %d (%s) recorded in %s", search_id, checked.config.name, store.url)
    return search_id


def launch(checked: CheckedSearch, store: Store | None = None, **options: Any) -> SearchRunner:
    """Record a new search and take it as its driver in this process, with the resources
    checking its config opened; returns the driver (not yet run)."""
    store = store or Store(checked.config.database)
    search_id = record(checked, store)
    return reopen(search_id, store, checked=checked, **options)


def _resume_config(
    search_id: int,
    store: Store,
    stored: dict[str, Any],
    supernet: str | os.PathLike | None,
    predictor: str | os.PathLike | None,
) -> CheckedSearch:
    """The stored config checked again, with the files recorded at launch (their absolute
    paths, or the overrides given), refused unless their SHA-256 is the recorded one."""
    recorded, recorded_predictor = records.recorded_files(store, search_id)
    if predictor is not None and recorded_predictor is None:
        raise SearchError(f"search {search_id} was launched without a predictor; drop --predictor")
    paths: dict[str, Any] = {
        "supernet": str(Path(supernet).absolute())
        if supernet
        else _recorded_path(search_id, "trained file", "--supernet", recorded)
    }
    if recorded_predictor is not None:
        paths["predictor"] = (
            str(Path(predictor).absolute())
            if predictor
            else _recorded_path(search_id, "predictor", "--predictor", recorded_predictor)
        )
    return check_search_config(
        {**stored, **paths},
        f"of search {search_id}",
        recorded.sha256,
        recorded_predictor.sha256 if recorded_predictor else None,
    )


def check_resumable(search_id: int, store: Store, force: bool = False) -> None:
    """SearchError unless `resume` would take the search now: it is unfinished and, without
    `force`, no live driver holds its lease. (A check before starting a worker: the worker's
    own compare-and-set on the lease still decides a race.)"""
    with store.session() as s:
        row = _resumable(s, search_id, store)
        holder, until = lease.holder(row), row.lease_until
    if holder is not None and not force:
        raise _refuse(search_id, holder, until)


def reopen(
    search_id: int,
    store: Store,
    force: bool = False,
    supernet: str | os.PathLike | None = None,
    predictor: str | os.PathLike | None = None,
    checked: CheckedSearch | None = None,
    **options: Any,
) -> SearchRunner:
    """The driver of an unfinished search, with the files recorded at its launch (or the
    `supernet` / `predictor` given instead, if their SHA-256 is the recorded one); `checked`:
    the config as `launch` checked it, whose opened files it recorded. Nothing is written
    unless the files check out and the lease is taken."""
    with store.session() as s:
        row = _resumable(s, search_id, store)
        seen, until = row.driver, lease.aware(row.lease_until)
        holder = lease.holder(row)
        expired = until is None or until <= lease.now()
        stored, status = dict(row.config), row.status
    if holder is not None and not force:
        raise _refuse(search_id, holder, until)
    if checked is None:
        checked = _resume_config(search_id, store, stored, supernet, predictor)
    driver = lease.driver_id()
    # compare-and-set on the driver seen above (and, for an expired lease, on its still
    # being expired), so that of two drivers resuming at once only one gets the search
    # a failed or cancelled search runs again: its row says so until it finishes anew
    again = {"status": RUNNING, "message": "resumed", "finished_at": None}
    if not lease.take(
        store,
        Search,
        search_id,
        driver,
        seen,
        only_if_expired=expired and not force,
        **(again if status in (FAILED, CANCELLED) else {}),
    ):
        with store.session() as s:
            row = store.search(s, search_id)
            raise _refuse(search_id, row.driver, row.lease_until)
    if holder is not None:
        log.warning("search %d: driver %s took the lease over from %s", search_id, driver, holder)
    runner = ActiveRunner if checked.config.evaluation == "active" else SearchRunner
    return runner(store, search_id, checked.config, checked.resources, driver=driver, **options)


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in RUNNER_OPTIONS if k in kwargs}


def launch_search(checked: CheckedSearch, store: Store | None = None, **kwargs: Any) -> Outcome:
    options = _split(kwargs)
    return launch(checked, store, **options).run(**kwargs)


def resume_search(
    search_id: int,
    store: Store,
    force: bool = False,
    supernet: str | os.PathLike | None = None,
    predictor: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Outcome:
    options = _split(kwargs)
    with store.session() as s:
        row = store.search(s, search_id)
        if row.status == CANCELLING:  # its driver died before stopping
            holder = lease.holder(row)
            if holder is not None and not force:
                raise _refuse(search_id, holder, row.lease_until)
            row.status, row.message, row.finished_at = CANCELLED, "cancelled", lease.now()
            row.driver, row.lease_until = lease.driver_id(), None  # a live old driver then stops
            return records.outcome_of(row)
    return reopen(search_id, store, force, supernet, predictor, **options).run(**kwargs)


def cancel_search(search_id: int, store: Store) -> str:
    """Ask the driver to stop after its generation; returns the new status."""
    with store.session() as s:
        row = _unfinished(s, search_id, store)
        if row.status == FAILED:
            row.status, row.finished_at = CANCELLED, lease.now()
        else:
            row.status = CANCELLING
        return row.status
