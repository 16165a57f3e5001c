"""The SQL store: SQLite by default (embedded, no server), PostgreSQL for distributed runs.

`Store(url)` connects, brings the schema to the newest migration (so an old database opens
with a new version) and hands out sessions. A database that cannot be reached gives a
StoreError that names the URL (without its password) and the reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from nas.errors import NotFoundError, StoreError
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
]


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (psycopg2 is not a dependency)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # `nas search show` reads while a search writes
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Store:
    def __init__(self, url: str = DEFAULT_URL, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise StoreError(f"invalid database URL {url!r}") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(self.url, future=True)
        except (ArgumentError, ImportError) as err:
            raise StoreError(f"cannot use database {safe_url(self.url)}: {err}") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            raise StoreError(f"cannot connect to database {safe_url(self.url)}: {reason}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (a no-op when it is current)."""
        cfg = alembic_config(self.url)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per open otherwise
        sqlite = self.engine.dialect.name == "sqlite"
        try:
            with self.engine.connect() as conn:
                if sqlite:
                    # SQLite alters a column by copying the table and dropping the old one;
                    # with foreign keys on, that drop cascades and deletes every metrics and
                    # exports row. The pragma only takes effect outside a transaction.
                    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    conn.commit()
                try:
                    with conn.begin():
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
            raise StoreError(f"cannot migrate database {safe_url(self.url)}: {err}") from None
        except Exception as err:  # alembic: a revision this code does not know (newer schema)
            if "Can't locate revision" in str(err):
                raise StoreError(
                    f"database {safe_url(self.url)} has a newer schema than this version of "
                    f"nas ({err}); upgrade nas"
                ) from None
            raise

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
        """A session whose work is committed as one transaction (rolled back on error)."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
