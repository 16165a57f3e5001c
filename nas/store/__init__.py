"""The SQL store: SQLite by default (embedded, no server), PostgreSQL for distributed runs.

`Store(url)` connects, brings the schema to the newest migration (so an old database opens
with a new version) and hands out sessions. A database that cannot be reached gives a
StoreError that names the URL (without its password) and the reason. `Store(url,
create=False)`, for the commands that only read, refuses a SQLite file that does not exist
instead of creating an empty database there.

Processes that open one new database at the same instant take turns to migrate it: an
exclusive lock on `<file>.lock` beside a SQLite file, a transaction-level advisory lock on
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Select, create_engine, event, inspect, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from nas.errors import NotFoundError, StoreError, os_reason
from nas.store.models import (
    MEASURED_SUFFIX,
    Base,
    Candidate,
    Export,
    Metric,
    Predictor,
    Search,
    Supernet,
)

log = logging.getLogger(__name__)
DEFAULT_URL = "sqlite:///runs/nas.db"
MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key that serialises migrations of one PostgreSQL database ("nasmigr")
PG_MIGRATION_LOCK = 0x6E61736D69677200

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_URL",
    "MEASURED_SUFFIX",
    "Base",
    "Candidate",
    "Export",
    "Metric",
    "Predictor",
    "Search",
    "Store",
    "StoreError",
    "Supernet",
    "fetch_rows",
]


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (psycopg2 is not a dependency)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url


def _sqlite_file(database: str, query: Any) -> Path:
    """The file of a SQLite URL's database: a path, or a SQLite URI (`file:PATH?mode=ro`
    with `?uri=true`), whose folder is then the one to create."""
    if query.get("uri") == "true" and database.startswith("file:"):
        return Path(urlparse(database).path)
    return Path(database)


def _reason(err: Exception) -> str:
    """The first line of a database error (not SQLAlchemy's SQL and background link)."""
    orig = getattr(err, "orig", None)
    text_ = str(orig if orig is not None else err).strip()
    return text_.splitlines()[0] if text_ else type(err).__name__


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may have to wait
    cursor.execute("PRAGMA foreign_keys=ON")
    # `nas search show` reads while a search writes. Switching a new file to WAL needs the
    # file to itself, and SQLite answers "locked" at once (no busy wait) while another
    # process is migrating it: retry for up to 30 s, as the busy timeout would.
    for attempt in range(300):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == 299:
                raise
            time.sleep(0.1)
    cursor.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def fetch_rows(session: Session, statement: Select) -> list[tuple]:
    """The rows of a Core select as plain tuples, read through the driver's own cursor in
    the session's transaction. SQLAlchemy's row processing costs about 4x the read itself on
    a column of 100,000 values (170 ms against 45 ms, SQLite); a Pareto query reads several.
    The statement is still built and bound by SQLAlchemy, never from strings."""
    connection = session.connection()
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    params: Any = compiled.params
    if compiled.positiontup is not None:  # qmark (SQLite) rather than pyformat (psycopg)
        params = tuple(params[name] for name in compiled.positiontup)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


class Store:
    def __init__(self, url: str = DEFAULT_URL, migrate: bool = True, create: bool = True) -> None:
        """`create=False`: a SQLite file that does not exist is a StoreError ("no database
        at ..."), not a new empty database (for the commands that only read)."""
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except (ArgumentError, ValueError) as err:  # ValueError: a port that is not a number
            detail = ": the port is not a number" if isinstance(err, ValueError) else ""
            raise StoreError(f"invalid database URL {safe_url(url)!r}{detail}") from None
        self.sqlite_path: Path | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self.sqlite_path = _sqlite_file(parsed.database, parsed.query)
            if not create and not self.sqlite_path.is_file():
                raise StoreError(f"no database at {self.sqlite_path} ({safe_url(self.url)})")
            if create:
                try:
                    self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as err:  # under a file, on a read-only mount
                    raise StoreError(
                        f"cannot create database {safe_url(self.url)}: its folder "
                        f"{self.sqlite_path.parent}: {os_reason(err)}"
                    ) from None
        try:
            self.engine: Engine = create_engine(self.url, future=True)
        except (ArgumentError, ImportError, ValueError, TypeError) as err:
            raise StoreError(f"cannot use database {safe_url(self.url)}: {err}") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (DBAPIError, SQLAlchemyError) as err:
            self.engine.dispose()
            what = "open" if self.sqlite_path is not None else "connect to"
            raise StoreError(
                f"cannot {what} database {safe_url(self.url)}: {_reason(err)}{self._folder_note()}"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def _folder_note(self) -> str:
        """Why SQLite may not open a file that is there: its journal files (-wal, -shm)
        are made beside it, so its folder must be writable (a read-only mount is not, even
        for root)."""
        folder = self.sqlite_path.parent if self.sqlite_path is not None else None
        if folder is not None and folder.is_dir() and not os.access(folder, os.W_OK):
            return f" (its folder {folder} cannot be written)"
        return ""

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """An exclusive lock on `<file>.lock` beside a SQLite file, so that processes that
        open a new database at once migrate it in turn (PostgreSQL: see migrate)."""
        if self.sqlite_path is None or fcntl is None:
            yield
            return
        lock = self.sqlite_path.with_name(self.sqlite_path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a read-only folder: nobody can create the database there
            log.debug("no migration lock %s (%s)", lock, err.strerror)
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (a no-op when it is current)."""
        cfg = alembic_config(self.url)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per open otherwise
        sqlite = self.engine.dialect.name == "sqlite"
        postgres = self.engine.dialect.name == "postgresql"
        try:
            with self._migration_lock(), self.engine.connect() as conn:
                if sqlite:
                    # SQLite alters a column by copying the table and dropping the old one;
                    # with foreign keys on, that drop cascades and deletes every metrics and
                    # exports row. The pragma only takes effect outside a transaction.
                    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    conn.commit()
                try:
                    with conn.begin():
                        if postgres:  # held until this transaction ends
                            conn.execute(
                                text("SELECT pg_advisory_xact_lock(:key)"),
                                {"key": PG_MIGRATION_LOCK},
                            )
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                        if sqlite and (
                            broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                        ):
                            raise StoreError(
                                f"migrating {safe_url(self.url)} would break references "
                                f"({broken[:3]}); rolled back"
                            )
                finally:
                    if sqlite:
                        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                        conn.commit()
        except SQLAlchemyError as err:
            raise StoreError(
                f"cannot migrate database {safe_url(self.url)}: {_reason(err)}"
            ) from None
        except Exception as err:  # alembic: a revision this code does not know (newer schema)
            if "Can't locate revision" in str(err):
                raise StoreError(
                    f"database {safe_url(self.url)} has a newer schema than this version of "
                    f"nas ({err}); upgrade nas"
                ) from None
            raise

    def check_writable(self) -> None:
        """StoreError unless a SQLite file reads whole (PRAGMA quick_check: about 0.1 s per
        100 MB) and the database takes a write: what a server checks before it serves, as
        its launches and exports write. The write changes no row, and is rolled back."""
        if self.engine.dialect.name == "sqlite":
            try:
                with self.engine.connect() as conn:
                    problems = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
            except DBAPIError as err:  # a damaged page may stop the check itself
                problems = [_reason(err)]
            if problems != ["ok"]:
                raise StoreError(f"database {safe_url(self.url)} is damaged: {problems[0]}")
        try:
            with self.engine.connect() as conn, conn.begin() as transaction:
                # a read-only file or server refuses even an update of no row
                conn.execute(update(Search).where(Search.id < 0).values(id=Search.id))
                transaction.rollback()
        except (DBAPIError, SQLAlchemyError) as err:
            raise StoreError(
                f"cannot write database {safe_url(self.url)}: {_reason(err)}"
            ) from None

    def search(self, session: Session, search_id: int) -> Search:
        """The row of search `search_id`; NotFoundError (naming the database) if none."""
        row = session.get(Search, search_id)
        if row is None:
            raise NotFoundError(f"no search with id {search_id} in {safe_url(self.url)}")
        return row

    def tables(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed as one transaction (rolled back on error).

        The database refusing work (disk full, read-only, locked, connection lost) is a
        StoreError naming it; nothing of the transaction is kept."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            raise StoreError(f"database {safe_url(self.url)}: {reason}") from err

    def dispose(self) -> None:
        self.engine.dispose()
