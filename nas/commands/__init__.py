"""`nas` command groups, and the one way they report a user's mistake."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from nas.errors import UserError

stderr = Console(stderr=True)


def wide_console() -> Console:
    """A console for tables: rich assumes 80 columns when output is piped, too few for ours."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except UserError as err:  # anything else is a bug: let its traceback show
        stderr.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
