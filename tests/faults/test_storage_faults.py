"""A database that cannot be written: a read-only SQLite file, and a full disk (a commit
that fails with SQLite's own error). Either way: a clear error, and whole generations only."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from nas import core
from nas.cli import app
from nas.errors import UserError
from nas.search import COMPLETED, FAILED, launch_search, resume_search
from nas.store import Store
from tests.faults.harness import problems_of, stored

POP = 8


# ----- read-only ---------------------------------------------------------------------------


def _writable(db: Path) -> bool:
    try:
        with db.open("r+b"):
            pass
        probe = db.parent / ".probe"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def read_only(db: Path):
    """chmod 0444 the file and 0555 its folder; as root, where chmod does not bite, the
    immutable attribute (chattr +i) instead; skip if neither bites."""
    files = [p for p in db.parent.iterdir() if p.is_file()]
    modes = {p: p.stat().st_mode for p in [*files, db.parent]}
    for p in files:
        p.chmod(0o444)
    db.parent.chmod(0o555)
    undo = lambda: [p.chmod(m) for p, m in modes.items()]  # noqa: E731
    if _writable(db):
        undo()
        targets = [str(p) for p in [*files, db.parent]]
        if subprocess.run(["chattr", "+i", *targets], capture_output=True).returncode != 0:
            pytest.skip("running as root: chmod does not bite, and chattr +i is not available")
        undo = lambda: subprocess.run(["chattr", "-i", *targets], check=True)  # noqa: E731
        if _writable(db):
            undo()
            pytest.skip("neither chmod nor chattr +i makes the database read-only here")
    try:
        yield
    finally:
        undo()


def test_read_only_database(search_config, tmp_path):
    config = search_config(algorithm={"population": POP, "generations": 4, "seed": 0})
    db = tmp_path / "nas.db"
    store = Store(config.config.database)
    partial = launch_search(config, store, progress=False, stop_after_generations=2)
    store.dispose()
    cfg = tmp_path / "cfg" / "search.yaml"  # outside the read-only folder
    cfg.parent.mkdir()
    cfg.write_text(yaml.safe_dump(config.config.model_dump(mode="json")))
    url = config.config.database
    with read_only(db):
        with pytest.raises(UserError) as err:
            core.resume(partial.search_id, url, force=True)
        message = str(err.value)
        print("read-only database:", message)
        assert str(db) in message and "\n" not in message, message
        for args in (
            ["search", "resume", str(partial.search_id), "--db", url, "--no-progress"],
            ["search", "launch", str(cfg), "--db", url, "--no-progress"],
        ):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2, result.output
            assert "Traceback" not in result.output and "error" in result.output
    store = Store(url)
    state = stored(store, partial.search_id)
    assert state.generations_done == 2 and not problems_of(state, POP)
    outcome = resume_search(partial.search_id, store, progress=False)
    assert outcome.status == COMPLETED and outcome.candidates == 4 * POP
    assert not problems_of(stored(store, partial.search_id), POP)


# ----- disk full -----------------------------------------------------------------------------


class DiskFull:
    """Commits of the store's engine fail with "database or disk is full" from the
    `fail_at`-th generation's transaction on (`persistent`: every later commit that writes),
    the way pysqlite reports it; SQLAlchemy wraps it, and the transaction is rolled back."""

    def __init__(self, monkeypatch, fail_at: int, persistent: bool, engine=None) -> None:
        self.fail_at, self.persistent = fail_at, persistent
        self.generations = 0
        self.pending = {"generation": False, "writes": False}
        self.target = engine if engine is not None else Engine
        self.failures = 0
        event.listen(self.target, "after_cursor_execute", self._mark)
        self.real = SQLiteDialect_pysqlite.do_commit
        if engine is not None:
            monkeypatch.setattr(engine.dialect, "do_commit", self._commit)
        else:
            monkeypatch.setattr(
                SQLiteDialect_pysqlite, "do_commit", lambda _self, conn: self._commit(conn)
            )
        self._engine = engine

    def _mark(self, conn, cursor, statement, parameters, context, executemany) -> None:
        sql = statement.lstrip().upper()
        if sql.startswith("INSERT INTO CANDIDATES"):
            self.pending["generation"] = True
        if sql.startswith(("INSERT", "UPDATE", "DELETE")):
            self.pending["writes"] = True

    def _commit(self, dbapi_connection) -> None:
        generation, writes = self.pending["generation"], self.pending["writes"]
        self.pending.update(generation=False, writes=False)
        if generation:
            self.generations += 1
        if (generation and self.generations == self.fail_at) or (
            self.persistent and writes and self.generations >= self.fail_at
        ):
            self.failures += 1
            raise sqlite3.OperationalError("database or disk is full")
        dbapi_connection.commit()

    def remove(self) -> None:
        event.remove(self.target, "after_cursor_execute", self._mark)


@pytest.mark.parametrize("persistent", [False, True], ids=["one-commit", "full-for-good"])
def test_disk_full_in_a_generation(search_config, monkeypatch, persistent):
    config = search_config(algorithm={"population": POP, "generations": 6, "seed": 1})
    store = Store(config.config.database)
    full = DiskFull(monkeypatch, fail_at=3, persistent=persistent, engine=store.engine)
    with pytest.raises(Exception) as err:
        launch_search(config, store, progress=False)
    full.remove()
    monkeypatch.undo()
    assert "database or disk is full" in str(err.value), repr(err.value)
    assert full.failures >= 1
    (search_id,) = {1}
    state = stored(store, search_id)
    assert len(state.rows) % POP == 0 and not problems_of(state, POP), state
    assert state.generations_done == 2  # the third generation's transaction was rolled back
    if not persistent:  # the driver could still record why it stopped
        assert state.status == FAILED
        outcome = core.get_search(search_id, config.config.database)
        assert "disk is full" in outcome["message"]
    # space freed: the search resumes from its whole generations, with nothing duplicated
    outcome = resume_search(search_id, store, force=True, progress=False)
    assert outcome.status == COMPLETED
    final = stored(store, search_id)
    assert len(final.rows) == 6 * POP and not problems_of(final, POP)
    assert state.pairs <= final.pairs


@pytest.mark.parametrize("persistent", [False, True], ids=["one-commit", "full-for-good"])
def test_disk_full_through_the_cli(search_config, tmp_path, monkeypatch, persistent):
    config = search_config(algorithm={"population": POP, "generations": 6, "seed": 1})
    Store(config.config.database).dispose()  # migrated before the disk fills
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config.config.model_dump(mode="json")))
    full = DiskFull(monkeypatch, fail_at=2, persistent=persistent)
    try:
        result = CliRunner().invoke(app, ["search", "launch", str(path), "--no-progress"])
    finally:
        full.remove()
    monkeypatch.undo()
    assert full.failures >= 1
    state = stored(Store(config.config.database), 1)
    assert state.generations_done == 1 and not problems_of(state, POP)
    output = result.output + (repr(result.exception) if result.exception else "")
    assert "disk is full" in output, output
    assert result.exit_code == 2 and "Traceback" not in result.output, (
        result.exit_code,
        result.exception,
    )
