"""Leases on rows: one worker at a time runs a search, an export, or any later job.

A leased row has two columns: `driver` (the worker's host:pid:token) and `lease_until`. The
worker that holds the lease renews it at start, from a heartbeat thread, and in every write
it makes (`hold`, first in the write's transaction); it gives the lease up when it stops. A
row whose lease has run out, or whose worker died on this host, is held by nobody, and a new
worker takes it with one compare-and-set (`take`), so that of two workers racing for it only
one wins. A worker whose lease was taken over finds so at its next write (LeaseLost), writes
nothing and stops.

One module serves every leased table, as Optuna keeps one heartbeat for all its storages:
pass the mapped class (`Search`, `Export`) and the row's id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from nas.errors import LeaseError, LeaseLost

if TYPE_CHECKING:  # nas.store's package imports nothing from here; no cycle at run time
    from nas.store import Store

log = logging.getLogger(__name__)
LEASE_ENV = "NAS_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0

__all__ = [
    "LeaseLost",
    "Leased",
    "aware",
    "driver_id",
    "expiry",
    "heartbeat",
    "hold",
    "holder",
    "lease_seconds",
    "now",
    "release",
    "renew",
    "take",
]


class Leased(Protocol):
    """A row with a lease: what `holder` reads."""

    driver: str
    lease_until: datetime | None


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite gives naive datetimes back)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    """A stored time as ISO 8601 text with its UTC offset on every backend (SQLite's naive
    datetimes too): the RFC 3339 `date-time` the API documents, and what JSON output shows."""
    moment = aware(moment)
    return moment.isoformat() if moment is not None else None


def lease_seconds() -> float:
    """How long a lease lasts without renewal: $NAS_LEASE_SECONDS, else 60 s."""
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise LeaseError(f"${LEASE_ENV} must be a number of seconds > 0, not {raw!r}")
    return value


def expiry() -> datetime:
    """When a lease taken or renewed now runs out."""
    return now() + timedelta(seconds=lease_seconds())


def driver_id() -> str:
    """host:pid:token, new for each worker (two workers of one process differ too)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(row: Leased) -> str | None:
    """The worker whose lease on the row is fresh, or None if nobody holds it: the lease ran
    out, or its worker's process on this host is gone (kill -9) before it ran out."""
    until = aware(row.lease_until)
    if until is None or until <= now():
        return None
    host, _, rest = row.driver.partition(":")
    pid = rest.split(":", 1)[0]
    if (
        host == socket.gethostname()
        and pid.isdigit()
        and int(pid) != os.getpid()
        and not _process_alive(int(pid))
    ):
        return None
    return row.driver


def hold(s: Session, model: type, row_id: int, driver: str, what: str, **values: Any) -> None:
    """Renew `driver`'s lease on the row in this transaction (setting `values` too), or
    LeaseLost if another worker holds it now. First in a transaction, so that the row is
    locked (PostgreSQL) or the database is (SQLite) until the transaction ends. `what`
    names the row in the error ("search 3", "export 7")."""
    result = s.execute(
        update(model)
        .where(model.id == row_id, model.driver == driver)
        .values(lease_until=expiry(), **values)
    )
    if result.rowcount != 1:
        taker = s.scalar(select(model.driver).where(model.id == row_id))
        raise LeaseLost(
            f"{what}: lease taken by {taker or 'another worker'}; {driver} stops without writing"
        )


def renew(store: Store, model: type, row_id: int, driver: str, what: str) -> None:
    """Renew the lease (at start, and from the heartbeat); LeaseLost if it was taken."""
    with store.session() as s:
        hold(s, model, row_id, driver, what)


def release(store: Store, model: type, row_id: int, driver: str) -> None:
    """Give the lease up (if still held), so that another worker may take the row at once."""
    with store.session() as s:
        s.execute(
            update(model).where(model.id == row_id, model.driver == driver).values(lease_until=None)
        )


def take(
    store: Store,
    model: type,
    row_id: int,
    driver: str,
    seen: str,
    only_if_expired: bool,
    where: tuple[ColumnElement[bool], ...] = (),
    **values: Any,
) -> bool:
    """Make `driver` the row's worker if the row still names worker `seen` (and, with
    `only_if_expired`, no lease on it is fresh; and every condition of `where` holds),
    setting `values` too: one compare-and-set, so two workers taking it at once cannot
    both win. Returns whether this one did."""
    conditions = [model.id == row_id, model.driver == seen, *where]
    if only_if_expired:
        conditions.append(or_(model.lease_until.is_(None), model.lease_until <= now()))
    with store.session() as s:
        result = s.execute(
            update(model).where(*conditions).values(driver=driver, lease_until=expiry(), **values)
        )
        return result.rowcount == 1


@contextlib.contextmanager
def heartbeat(renew_once: Callable[[], None], what: str) -> Iterator[None]:
    """Call `renew_once` every quarter of the lease length while the block runs (one step of
    the work, a generation or an export, may take longer than the lease). A beat that finds
    the lease lost stops beating (the next write stops the work); a database hiccup is
    retried at the next beat."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_seconds() / 4):
            try:
                renew_once()
            except LeaseLost:
                return
            except Exception as err:
                log.warning("%s: cannot renew its lease: %s", what, err)

    thread = threading.Thread(target=beat, name="nas-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
