"""A search's life: launched, run by one driver, cancelled, resumed after its driver died.

A driver killed at any moment (kill -9) loses at most the generation in flight: `resume`
rebuilds the study from the stored rows and continues, with the files recorded at launch
(refusing any whose SHA-256 differs). `cancel` asks a running driver to stop after its
current generation.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from nas.config import SearchConfig
from nas.errors import SearchError
from nas.evaluation import open_resources
from nas.search import records
from nas.search.runner import SearchRunner
from nas.search.state import CANCELLED, CANCELLING, FAILED, FINAL, RUNNING, Outcome
from nas.store import Search, Store

log = logging.getLogger(__name__)
RUNNER_OPTIONS = ("pool", "progress", "on_generation")


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unfinished(session: Any, search_id: int, store: Store) -> Search:
    """The search's row; NotFoundError if there is none, SearchError if it has ended."""
    row = store.search(session, search_id)
    if row.status in FINAL:
        raise SearchError(f"search {search_id} is already {row.status}")
    return row


def launch(config: SearchConfig, store: Store | None = None, **options: Any) -> SearchRunner:
    """Record a new search and return its driver (not yet run)."""
    store = store or Store(config.database)
    resources = open_resources(config)
    space = resources.artifact.space
    if config.space and config.space != space.name:
        raise SearchError(
            f"config names space {config.space!r} but supernet {config.supernet} is {space.name!r}"
        )
    search_id = records.create_search(store, config, resources, driver_id())
    log.info("search %d (%s) created in %s", search_id, config.name, store.url)
    return SearchRunner(store, search_id, config, resources, **options)


def reopen(search_id: int, store: Store, force: bool = False, **options: Any) -> SearchRunner:
    """The driver of an unfinished search, with the files recorded at its launch."""
    with store.session() as s:
        row = _unfinished(s, search_id, store)
        host, _, pid = row.driver.partition(":")
        if (
            row.status == RUNNING
            and not force
            and host == socket.gethostname()
            and pid.isdigit()
            and int(pid) != os.getpid()
            and _process_alive(int(pid))
        ):
            raise SearchError(
                f"search {search_id} is still being run by process {pid}; "
                "stop it first (or pass --force)"
            )
        row.driver = driver_id()
        config = SearchConfig(**row.config)
    supernet_sha, predictor_sha = records.recorded_hashes(store, search_id)
    resources = open_resources(config, supernet_sha, predictor_sha)
    return SearchRunner(store, search_id, config, resources, **options)


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in RUNNER_OPTIONS if k in kwargs}


def launch_search(config: SearchConfig, store: Store | None = None, **kwargs: Any) -> Outcome:
    options = _split(kwargs)
    return launch(config, store, **options).run(**kwargs)


def resume_search(search_id: int, store: Store, force: bool = False, **kwargs: Any) -> Outcome:
    options = _split(kwargs)
    with store.session() as s:
        row = store.search(s, search_id)
        if row.status == CANCELLING:  # its driver died before stopping
            row.status, row.message, row.finished_at = CANCELLED, "cancelled", records.now()
            return records.outcome_of(row)
    return reopen(search_id, store, force, **options).run(**kwargs)


def cancel_search(search_id: int, store: Store) -> str:
    """Ask the driver to stop after its generation; returns the new status."""
    with store.session() as s:
        row = _unfinished(s, search_id, store)
        if row.status == FAILED:
            row.status, row.finished_at = CANCELLED, records.now()
        else:
            row.status = CANCELLING
        return row.status
