"""`nas space`: list the presets and a user's spaces, check a space file, sample archs,
describe a space (its size and its smallest and largest subnets) or one arch layer by
layer."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

import supernet
from nas import core
from nas.commands import stderr, user_errors, wide_console
from supernet import Arch, SearchSpace
from supernet.errors import InvalidArchError, SpaceDefinitionError

app = typer.Typer(
    help="Search spaces: list presets and yours, check a space file, sample archs, describe a "
    "space or an arch.",
    no_args_is_help=True,
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


MCU_OPTION = typer.Option(
    "stm32f746", "--mcu", help="The MCU profile that costs the smallest and largest subnets."
)


@app.command("list")
def list_spaces(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the search-space presets, then the space files in $NAS_SPACE_DIR, with their
    genes and sizes (a file that does not define a space: its problem)."""
    with user_errors():
        infos = core.list_spaces(user=True)
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    table = Table(title="search spaces")
    for col in ("name", "source", "genes", "networks", "description"):
        table.add_column(col)
    for info in infos:
        if "error" in info:
            table.add_row(info["name"], info["source"], "", "", f"[red]{info['error']}[/red]")
            continue
        genes = ", ".join(_gene_text(k, v) for k, v in info["genes"].items())
        table.add_row(
            info["name"], info["source"], genes, f"{info['size']:.2e}", info["description"]
        )
    console.print(table)


@app.command("validate")
def validate(
    file: str = typer.Argument(..., help="A YAML file defining a space (or a preset's name)."),
    mcu: str = MCU_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Check a space file: every problem found, one per line (exit 2), or its size and its
    smallest and largest subnets."""
    with user_errors():  # a name that is neither a file nor a preset: its one line
        try:
            space = supernet.get_space(file)
        except SpaceDefinitionError as err:
            _print_problems(err, as_json)
            raise typer.Exit(code=2) from None
    _print_space(space, mcu, as_json)


def _print_problems(err: SpaceDefinitionError, as_json: bool) -> None:
    if as_json:
        problems = [{"field": f, "reason": r} for f, r in err.field_problems]
        typer.echo(json.dumps({"source": err.source, "problems": problems}))
        return
    count = len(err.field_problems)
    stderr.print(
        f"[bold red]error:[/] invalid search space {escape(err.source)}: "
        f"{count} problem{'s' if count > 1 else ''}",
        highlight=False,
        soft_wrap=True,
    )
    for field, reason in err.field_problems:
        stderr.print(f"  {escape(field)}: {escape(reason)}", highlight=False, soft_wrap=True)


def _print_space(name: str | SearchSpace, mcu: str, as_json: bool) -> None:
    with user_errors():
        space = supernet.get_space(name)
        info = core.describe_space(space)
        extremes = core.space_extremes(space, mcu)
    if as_json:
        typer.echo(json.dumps({**info, "hash": space.definition_hash, **extremes}))
        return
    console.print(f"{info['name']}: {info['description']}", soft_wrap=True)
    console.print(f"{info['size']:.3g} networks; definition hash {space.definition_hash}")
    genes = ", ".join(_gene_text(k, v) for k, v in info["genes"].items())
    console.print(f"genes: {genes}", soft_wrap=True)
    for which, entry in extremes.items():
        costs = entry[mcu]
        on_mcu = (
            costs["error"]
            if "error" in costs
            else f"peak SRAM {costs['peak_sram_kb']:.1f} kB, flash {costs['flash_kb']:.1f} kB, "
            f"latency {costs['latency_ms']:.1f} ms"
        )
        console.print(
            f"{which}: {space.resolution_gene}={entry['r']}, {entry['macs'] / 1e6:.2f} M MACs, "
            f"{entry['params'] / 1e6:.3f} M params; on {mcu}: {on_mcu}",
            soft_wrap=True,
        )


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
    arch: str | None = typer.Option(
        None,
        "--arch",
        "-a",
        help="Arch JSON, @file.json, or the words largest / smallest; without it, the space.",
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size recorded in the spec."),
    mcu: str = MCU_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the NetworkSpec as JSON."),
) -> None:
    """Print an arch's layers with shapes, MACs and params, and the totals; without --arch,
    the space: its size and its smallest and largest subnets, costed on --mcu."""
    if arch is None:
        _print_space(space, mcu, as_json)
        return
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
