"""The service's errors. Each derives from `UserError`, the one base the doors catch.

`NotFoundError` marks a reference to something that does not exist (a search id, a
candidate number, an export): the CLI prints it like any user error, the HTTP API answers
404 with it.
"""

from __future__ import annotations

from latency_models.errors import UserError
from supernet.errors import ConfigError


class SearchConfigError(ConfigError):
    """A search config that does not validate; the message names the field. `problems`:
    every problem found, each as {"field", "message"} (what the HTTP API answers with)."""

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class SearchError(UserError, RuntimeError):
    """A search that cannot be launched, resumed or cancelled; the message says why."""


class NotFoundError(UserError, LookupError):
    """No search, candidate or export with the id given."""

    def __str__(self) -> str:  # LookupError would otherwise quote a single argument
        return str(self.args[0]) if self.args else ""


class GoneError(NotFoundError):
    """Something that was there and is no more: an export's file deleted, moved or replaced
    since the export wrote it. The HTTP API answers 410."""

    status = 410


class QueryError(UserError, ValueError):
    """A Pareto query that cannot be run (an unknown metric, a malformed filter)."""


class ExportError(UserError, RuntimeError):
    """An export that cannot be made or does not check out; the message says why."""


class WorkerError(UserError, RuntimeError):
    """Ray could not be reached, or a chunk failed on every retry."""


class LeaseError(UserError, RuntimeError):
    """A leased row (a search, an export job) that cannot be taken or held as asked."""


class LeaseLost(LeaseError):
    """Another worker took the row's lease over: this one writes nothing more and stops."""


class StoreError(UserError, RuntimeError):
    """The database cannot be used (unreachable, bad URL, newer schema than this code)."""


class ServeError(UserError, RuntimeError):
    """The server cannot start as asked (no token on a public address, a bad token file, a
    data folder it cannot write)."""


def os_reason(err: OSError) -> str:
    """Why a file system call failed, in words. `mkdir(exist_ok=True)` on a file says "File
    exists", which reads as if nothing were wrong: a file is there instead of a folder."""
    if isinstance(err, FileExistsError):
        return "a file is there, not a folder"
    return err.strerror or str(err)


__all__ = [
    "ExportError",
    "GoneError",
    "LeaseError",
    "LeaseLost",
    "NotFoundError",
    "QueryError",
    "SearchConfigError",
    "SearchError",
    "ServeError",
    "StoreError",
    "UserError",
    "WorkerError",
    "os_reason",
]
