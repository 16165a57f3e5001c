"""`nas hardware`: the device profiles the cost models read (latency_models/profiles/)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

import latency_models as lm
from nas import core
from nas.commands import user_errors, wide_console

app = typer.Typer(help="Hardware profiles: list them, show one.", no_args_is_help=True)
console = wide_console()


@app.command("list")
def list_profiles(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the shipped hardware profiles with their kind, metrics and options."""
    with user_errors():
        infos = core.list_hardware()  # the shape GET /hardware returns as its items
    if as_json:
        typer.echo(json.dumps(infos, indent=2, default=str))
        return
    table = Table(title="hardware profiles")
    for col in ("name", "kind", "metrics", "options", "description"):
        table.add_column(col)
    for info in infos:
        options = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in info["options"].items())
        metrics = ", ".join(m for m in info["metrics"] if m not in ("macs", "params"))
        table.add_row(info["name"], info["kind"], metrics, options, info["description"])
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="A profile name (see `nas hardware list`) or a path."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    raw: bool = typer.Option(False, "--yaml", help="Print the profile file itself."),
) -> None:
    """Show one profile: its kind, metrics, options and key parameters."""
    with user_errors():
        model = lm.load_hardware(name)
    if raw:
        typer.echo(Path(model.source).read_text())
        return
    summary = model.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    table = Table(title=f"{model.name} ({model.kind})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    console.print(table)
