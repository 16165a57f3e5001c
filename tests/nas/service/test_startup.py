"""`nas serve` refuses to start, in one line and before binding its port, when its data
folder cannot be written or its database cannot be opened or written; a supervisor whose
database or disk fails while it runs logs each distinct fault once.

The process may run as root, which writes through any folder's permissions: an unwritable
folder here is a read-only bind mount (skipped where mounting is not allowed), or a path
under a regular file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from nas import core
from nas.cli import app as cli
from nas.service.jobs import JobRunner
from nas.store import Store
from tests.conftest import needs_postgres


def serve(monkeypatch, db: str, data_dir: Path) -> tuple[int, str, bool]:
    """`nas serve` with uvicorn.run replaced: its exit code, its output, and whether it got
    as far as serving (binding the port)."""
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    args = ["serve", "--db", db, "--data-dir", str(data_dir), "--port", "8123"]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output, bool(served)


def assert_refused(outcome: tuple[int, str, bool], *fragments: str) -> None:
    exit_code, output, served = outcome
    assert exit_code == 2 and not served, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0], output


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


@contextlib.contextmanager
def read_only_view(folder: Path) -> Iterator[Path]:
    """`folder` bind-mounted read-only beside it (root's writes are refused there too)."""
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(folder), str(view)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {mounted.stderr.strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_writable_setup_serves_and_makes_its_missing_folders(monkeypatch, tmp_path):
    data_dir = tmp_path / "new" / "data"
    outcome = serve(monkeypatch, f"sqlite:///{tmp_path / 'new' / 'db' / 'nas.db'}", data_dir)
    assert outcome[0] == 0 and outcome[2], outcome[1]
    assert (data_dir / "logs").is_dir() and (data_dir / "exports").is_dir()
    assert list((data_dir / "logs").iterdir()) == []  # the write check leaves nothing


def test_a_data_folder_under_a_file_is_refused(monkeypatch, tmp_path, a_file):
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    assert_refused(
        serve(monkeypatch, db, a_file / "data"),
        f"cannot write the data folder {a_file / 'data'}: Not a directory",
    )
    assert_refused(
        serve(monkeypatch, db, a_file),
        f"cannot write the data folder {a_file}: a file is there, not a folder",
    )


def test_a_data_folder_on_a_read_only_mount_is_refused(monkeypatch, tmp_path):
    (tmp_path / "disk").mkdir()
    with read_only_view(tmp_path / "disk") as view:
        for data_dir in (view, view / "missing" / "data"):
            assert_refused(
                serve(monkeypatch, f"sqlite:///{tmp_path / 'nas.db'}", data_dir),
                f"cannot write the data folder {data_dir}: Read-only file system",
            )


def test_a_sqlite_file_whose_folder_cannot_be_made_is_refused(monkeypatch, tmp_path, a_file):
    data_dir = tmp_path / "data"
    assert_refused(
        serve(monkeypatch, f"sqlite:///{a_file / 'nas.db'}", data_dir),
        f"cannot create database sqlite:///{a_file / 'nas.db'}: its folder {a_file}: "
        "a file is there, not a folder",
    )
    assert_refused(
        serve(monkeypatch, f"sqlite:///{a_file / 'sub' / 'nas.db'}", data_dir),
        f"its folder {a_file / 'sub'}: Not a directory",
    )
    assert not data_dir.exists()  # the database is checked first


def test_a_sqlite_file_on_a_read_only_mount_is_refused(monkeypatch, tmp_path):
    disk = tmp_path / "disk"
    Store(f"sqlite:///{disk / 'nas.db'}").dispose()  # a good database, then mounted read-only
    with read_only_view(disk) as view:
        data_dir = tmp_path / "data"
        assert_refused(
            serve(monkeypatch, f"sqlite:///{view / 'nas.db'}", data_dir),
            f"cannot open database sqlite:///{view / 'nas.db'}",
            f"(its folder {view} cannot be written)",
        )
        assert_refused(
            serve(monkeypatch, f"sqlite:///{view / 'new.db'}", data_dir),
            f"cannot open database sqlite:///{view / 'new.db'}",
        )
        assert_refused(
            serve(monkeypatch, f"sqlite:///{view / 'sub' / 'new.db'}", data_dir),
            f"its folder {view / 'sub'}: Read-only file system",
        )


def test_files_that_are_not_a_database_are_refused(monkeypatch, tmp_path):
    text_file, noise = tmp_path / "text.db", tmp_path / "noise.db"
    text_file.write_text("name,value\nnot,sqlite\n" * 200)
    noise.write_bytes(os.urandom(8192))
    for path in (text_file, noise):
        assert_refused(
            serve(monkeypatch, f"sqlite:///{path}", tmp_path / "data"),
            f"cannot open database sqlite:///{path}: file is not a database",
        )


def test_a_database_damaged_past_its_schema_is_refused(monkeypatch, tmp_path):
    """A page of a table overwritten: the database opens, but its check (quick_check)
    finds the damage."""
    path = tmp_path / "nas.db"
    Store(f"sqlite:///{path}").dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, text TEXT)")
        conn.executemany("INSERT INTO filler (text) VALUES (?)", [("x" * 200,)] * 2000)
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
    page = 4096
    with path.open("r+b") as file:
        file.seek((path.stat().st_size // page - 5) * page)  # one of the filler's pages
        file.write(os.urandom(page))
    Store(f"sqlite:///{path}").dispose()  # opening alone does not see it
    assert_refused(
        serve(monkeypatch, f"sqlite:///{path}", tmp_path / "data"),
        f"database sqlite:///{path} is damaged: ",
    )


def test_a_read_only_sqlite_url_is_refused(monkeypatch, tmp_path):
    path = tmp_path / "nas.db"
    Store(f"sqlite:///{path}").dispose()
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    assert_refused(
        serve(monkeypatch, url, tmp_path / "data"),
        "cannot write database",
        "attempt to write a readonly database",
    )


def test_an_unreachable_postgresql_is_refused(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_refused(
        serve(monkeypatch, f"postgresql://nas:secret@127.0.0.1:{port}/nas", tmp_path / "data"),
        f"cannot connect to database postgresql+psycopg://nas:***@127.0.0.1:{port}/nas",
        "Connection refused",
    )


@needs_postgres
def test_a_read_only_postgresql_database_is_refused(monkeypatch, tmp_path, postgres_url):
    Store(postgres_url).dispose()  # migrated, then made read-only
    name = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    admin.dispose()
    assert_refused(
        serve(monkeypatch, postgres_url, tmp_path / "data"),
        "cannot write database",
        "read-only transaction",
    )


def test_nas_serve_exits_with_one_line_before_binding_its_port(tmp_path, a_file):
    """The real command, in its own process: one line on stderr, exit 2, the port free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "nas", "serve", "--port", str(port)]
    command += ["--db", f"sqlite:///{tmp_path / 'nas.db'}", "--data-dir", str(a_file / "data")]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "400"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.splitlines() == [
        f"error: cannot write the data folder {a_file / 'data'}: Not a directory "
        f"({a_file / 'data'})"
    ]
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))


# ----- a fault while serving ------------------------------------------------------------------


def test_the_supervisor_logs_each_distinct_fault_once(search_config, tmp_path, caplog):
    """A search waiting for a worker while the data folder is broken: the supervisor tries
    every poll, logs the fault once (and again only when it changes), then starts the
    worker once the folder is repaired."""
    config = search_config()
    store = Store(config.config.database)
    data_dir = tmp_path / "data"
    jobs = JobRunner(store, data_dir, poll_seconds=0.05)
    jobs.check_data_dir()
    caplog.set_level(logging.INFO, logger="nas.service.jobs")
    jobs.start()  # nothing to supervise yet
    try:
        logs = data_dir / "logs"
        logs.rmdir()
        logs.write_text("a file where the logs folder was\n")
        search_id = core.record(config, store)

        def faults() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.levelno >= logging.WARNING]

        time.sleep(1.0)  # about 20 polls
        assert [r.getMessage().rsplit(": ", 1)[-1] for r in faults()] == [f"'{logs}'"]
        assert "FileExistsError" in faults()[0].getMessage()
        assert not faults()[0].exc_info  # a fault of the disk: its line says it all
        assert jobs.worker("search", search_id) is None

        logs.unlink()
        logs.mkdir()
        (logs / f"search-{search_id}.log").mkdir()  # another fault: logged once more
        time.sleep(1.0)
        assert len(faults()) == 2 and "IsADirectoryError" in faults()[1].getMessage()

        (logs / f"search-{search_id}.log").rmdir()
        deadline = time.monotonic() + 10
        while jobs.worker("search", search_id) is None:
            assert time.monotonic() < deadline, "no worker started after the repair"
            time.sleep(0.05)
        assert "works again" in faults()[2].getMessage() and len(faults()) == 3
    finally:
        jobs.stop(terminate_workers=True)
        store.dispose()
