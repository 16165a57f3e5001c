"""`nas` command groups, and the one way they report a user's mistake."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from latency_models.errors import HardwareError, TraceError
from latency_models.spec import SpecError
from nas.config import SearchConfigError
from nas.export import ExportError
from nas.pareto import QueryError
from nas.search import SearchError
from nas.store import StoreError
from nas.workers import WorkerError
from supernet.data import DatasetError
from supernet.errors import CheckpointError, InvalidArchError, UnknownSpaceError
from supernet.gan_train import GanConfigError
from supernet.train import ConfigError

# Errors caused by the user's input: reported in one line, exit status 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    InvalidArchError,
    UnknownSpaceError,
    CheckpointError,
    DatasetError,
    ConfigError,
    GanConfigError,
    FileNotFoundError,
    HardwareError,
    TraceError,
    SpecError,
    SearchConfigError,
    SearchError,
    StoreError,
    QueryError,
    ExportError,
    WorkerError,
)

stderr = Console(stderr=True)


def wide_console() -> Console:
    """A console for tables: rich assumes 80 columns when output is piped, too few for ours."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as err:
        stderr.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
