"""The `nas` command line. Each command group lives in its own module under nas/commands."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

from nas import __version__
from nas.commands import gan as gan_commands
from nas.commands import hardware as hardware_commands
from nas.commands import latency as latency_commands
from nas.commands import predictor as predictor_commands
from nas.commands import search as search_commands
from nas.commands import serve as serve_commands
from nas.commands import space as space_commands
from nas.commands import supernet as supernet_commands

app = typer.Typer(
    help="Neural architecture search: supernets, per-device cost models, constrained search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(space_commands.app, name="space")
app.add_typer(supernet_commands.app, name="supernet")
app.add_typer(predictor_commands.app, name="predictor")
app.add_typer(gan_commands.app, name="gan")
app.add_typer(hardware_commands.app, name="hardware")
app.add_typer(latency_commands.app, name="latency")
app.add_typer(search_commands.app, name="search")
app.command("pareto")(search_commands.pareto_command)
app.command("export")(search_commands.export_command)
app.command("finetune")(search_commands.finetune_command)
app.command("export-job")(search_commands.export_job_command)
app.command("serve")(serve_commands.serve)


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
    # INFO from this project only; libraries (onnxscript, torch.onnx, alembic) speak at WARNING
    for package in ("nas", "supernet", "latency_models"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        # logs go to stderr: stdout carries results (tables, --json) for scripts
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)],
    )
