"""The `nas` command line. Each command group lives in its own module under nas/commands."""

from __future__ import annotations

import logging

import typer
from rich.logging import RichHandler

from nas import __version__
from nas.commands import space

app = typer.Typer(
    help="Neural architecture search: supernets, per-device cost models, constrained search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(space.app, name="space")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nas {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=True)],
    )
