"""`FrontCache`: a server's recent fronts, kept while their search's rows are unchanged."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from nas.pareto.conditions import beyond_limits, parse_conditions
from nas.pareto.queries import Front, load_config, pareto_front
from nas.store import Store


class FrontCache:
    """Recent fronts of a server, each kept while its search's rows are unchanged.

    A front is a function of the query and of the search's stored rows, which change only
    when a generation, a verification or a new status is written; each of those sets the
    search's `updated_at`. So one primary-key read tells whether a kept front still holds.
    A finished search's fronts hold for good. A running search stores a generation every
    fraction of a second, so its front is computed again at most every `refresh_seconds`
    (what a page polling the search sees, at most that much behind the database).
    Concurrent requests for one front wait for one computation of it. A front is kept under
    its conditions as computed (`beyond_limits`), not as spelled."""

    def __init__(self, size: int = 64, refresh_seconds: float = 1.0) -> None:
        self.size, self.refresh_seconds = size, refresh_seconds
        self._fronts: OrderedDict[tuple, tuple[tuple, float, Front]] = OrderedDict()
        self._lock = threading.Lock()
        # a bounded set of locks (a front's is picked by its key's hash), not one per key:
        # queries with arbitrary filters must not grow the server's memory
        self._computing = [threading.Lock() for _ in range(16)]

    def front(
        self,
        store: Store,
        search_id: int,
        target: str | None = None,
        where: Sequence[str] = (),
        measured: bool = False,
    ) -> Front:
        key = (store.url, search_id, target, _condition_key(store, search_id, target, where))
        key += (measured,)
        # one computation per front at a time: the requests waiting here then find it kept
        with self._computing[hash(key) % len(self._computing)]:
            version = _data_version(store, search_id)
            with self._lock:
                kept = self._fronts.get(key)
            if kept is not None and self._holds(kept, version):
                with self._lock:
                    self._fronts.move_to_end(key)
                return kept[2]
            front = pareto_front(store, search_id, target, where, measured)
            with self._lock:
                self._fronts[key] = (version, time.monotonic(), front)
                self._fronts.move_to_end(key)
                while len(self._fronts) > self.size:
                    self._fronts.popitem(last=False)
            return front

    def _holds(self, kept: tuple[tuple, float, Front], version: tuple) -> bool:
        kept_version, computed_at, _ = kept
        if kept_version == version:
            return True
        still_running = version[1] == kept_version[1] == "running"
        return still_running and time.monotonic() - computed_at < self.refresh_seconds


def _condition_key(store: Store, search_id: int, target: str | None, where: Sequence[str]) -> tuple:
    """The conditions as the front is computed with them: resolved, and without those the
    search's own limits imply, so the page's request with its search's limits as `where`
    finds the plain front kept. Parsed values, not text: `str(Condition)` rounds them."""
    config = load_config(store, search_id)
    conditions = beyond_limits(parse_conditions(where, config, target), config)
    return tuple((c.metric, c.op, c.value) for c in conditions)


def _data_version(store: Store, search_id: int) -> tuple:
    """What changes whenever the rows a front is computed from change, status second
    (NotFoundError for an unknown search)."""
    with store.session() as s:
        row = store.search(s, search_id)
        return (row.updated_at, row.status, row.candidates_done, row.generations_done)
