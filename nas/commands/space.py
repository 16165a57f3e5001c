"""`nas space`: list the presets, sample archs, describe one arch layer by layer."""

from __future__ import annotations

import json

import typer
from rich.table import Table

import supernet
from nas.commands import user_errors, wide_console
from supernet import Arch, SearchSpace
from supernet.errors import InvalidArchError

app = typer.Typer(
    help="Search spaces: list presets, sample archs, describe an arch.", no_args_is_help=True
)
console = wide_console()

SPACE_OPTION = typer.Option(
    ...,
    "--space",
    "-s",
    help="A preset name (see `nas space list`) or a YAML file defining a space.",
)


def parse_arch(space: SearchSpace, text: str) -> Arch:
    """An arch from JSON text, or the words `largest` / `smallest`."""
    if text in ("largest", "smallest"):
        return getattr(space, text)()
    if text.startswith("@"):
        with open(text[1:]) as f:
            text = f.read()
    return space.from_json(text)


@app.command("list")
def list_spaces(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the search-space presets with their genes and sizes."""
    infos = [supernet.get_space(name).describe() for name in supernet.list_spaces()]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    table = Table(title="search spaces")
    for col in ("name", "genes", "networks", "description"):
        table.add_column(col)
    for info in infos:
        genes = ", ".join(_gene_text(k, v) for k, v in info["genes"].items())
        table.add_row(info["name"], genes, f"{info['size']:.2e}", info["description"])
    console.print(table)


def _gene_text(key: str, gene: dict) -> str:
    choices = gene["choices"]
    if key == "d":
        choices = sorted({c for stage in choices for c in stage})
    if key == "r" and len(choices) > 6:
        return f"r {choices[0]}..{choices[-1]}"
    text = f"{key} {{{','.join(str(c) for c in choices)}}}"
    return f"{text}x{gene['length']}" if "length" in gene else text


@app.command("sample")
def sample(
    space: str = SPACE_OPTION,
    n: int = typer.Option(1, "--n", "-n", min=1, help="How many archs."),
    seed: int | None = typer.Option(None, "--seed", help="Seed, for a repeatable sample."),
) -> None:
    """Print N random archs, one canonical JSON object per line."""
    with user_errors():
        s = supernet.get_space(space)
        rng = supernet.space.as_rng(seed)
        for _ in range(n):
            typer.echo(s.to_json(s.sample(rng)))


@app.command("describe")
def describe(
    space: str = SPACE_OPTION,
    arch: str = typer.Option(
        ..., "--arch", "-a", help="Arch JSON, @file.json, or the words largest / smallest."
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size recorded in the spec."),
    as_json: bool = typer.Option(False, "--json", help="Print the NetworkSpec as JSON."),
) -> None:
    """Print an arch's layers with shapes, MACs and params, and the totals."""
    with user_errors():
        s = supernet.get_space(space)
        try:
            parsed = parse_arch(s, arch)
        except OSError as err:
            raise InvalidArchError(s.name, "<arch>", f"cannot read {arch[1:]!r}: {err}") from None
        spec = s.to_spec(parsed, batch=batch)
    if as_json:
        out = spec.to_dict()
        out.update(
            arch=s.canonical(parsed), arch_id=s.arch_id(parsed), macs=spec.macs, params=spec.params
        )
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"{s.name} arch {s.arch_id(parsed)}  (r={parsed['r']}, batch={batch})")
    for col, justify in (
        ("layer", "left"),
        ("op", "left"),
        ("input", "right"),
        ("output", "right"),
        ("k/s/g", "right"),
        ("act", "left"),
        ("MACs", "right"),
        ("params", "right"),
    ):
        table.add_column(col, justify=justify)
    for layer in spec.layers:
        table.add_row(
            layer.name,
            layer.op + ("+bn" if layer.bn else ""),
            "x".join(map(str, layer.in_shape)),
            "x".join(map(str, layer.out_shape)),
            f"{layer.kernel}/{layer.stride}/{layer.groups}" if layer.op == "conv" else "",
            layer.act or "",
            f"{layer.macs:,}" if layer.macs else "",
            f"{layer.params:,}" if layer.params else "",
        )
    table.add_section()
    table.add_row(
        "total", f"{len(spec)} layers", "", "", "", "", f"{spec.macs:,}", f"{spec.params:,}"
    )
    console.print(table)
    console.print(
        f"MACs per sample: {spec.macs / 1e6:.2f} M   params: {spec.params / 1e6:.3f} M   "
        f"arch: {s.to_json(parsed)}",
        soft_wrap=True,
    )
