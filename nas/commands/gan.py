"""`nas gan`: train an Anycost GAN, evaluate sub-generators, draw sample grids."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from nas.commands import user_errors, wide_console
from nas.commands.space import parse_arch
from supernet.family import family_of_kind

app = typer.Typer(
    help="Anycost GANs: train, evaluate sub-generators, sample grids.", no_args_is_help=True
)
console = wide_console()
GAN = family_of_kind("gan")  # these commands are the generator family's


@app.command("train")
def train(
    config: Path = typer.Argument(..., help="GAN training config YAML (see experiments/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the out dir."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (overrides out_dir)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train: feature net, stage 1 (multi-resolution), stage 2 (elastic channels)."""
    with user_errors():
        cfg = GAN.load_train_config(config, out_dir=str(out) if out else None)
        result = GAN.train(cfg, resume=resume, progress=progress and not as_json)
    summary = {
        "gan": str(result.path),
        "sha256": result.sha256,
        "seconds": round(result.seconds, 1),
        **result.final,
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console.print(f"generator: {result.path}  (sha256 {result.sha256[:12]})", soft_wrap=True)
    for key, value in result.final.items():
        console.print(f"  {key:>18}: {value:.4g}")
    console.print(f"samples: {result.out_dir / 'samples.png'}")


def _archs(trained, arch: list[str], uniform: list[float]) -> list[dict]:
    archs = [parse_arch(trained.space, a) for a in arch]
    archs += [trained.space.uniform(r) for r in uniform]
    return archs or [trained.space.uniform(r) for r in sorted(trained.space.config.ratios)[::-1]]


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="gan.pt or its folder."),
    arch: list[str] = typer.Option([], "--arch", "-a", help="Arch JSON, @file, largest..."),
    uniform: list[float] = typer.Option([], "--uniform", help="A uniform channel ratio."),
    samples: int | None = typer.Option(None, "--samples", min=10, help="Images per FID."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Domain FID and consistency of sub-generators (default: every uniform ratio)."""
    with user_errors():
        trained = GAN.load_trained(checkpoint)
        archs = _archs(trained, arch, uniform)
        kwargs = {"samples": samples} if samples else {}
        results = trained.evaluator(**kwargs).evaluate_many(archs, progress=not as_json)
    if as_json:
        for a, r in zip(archs, results, strict=True):
            typer.echo(json.dumps({"arch": a, **r.to_dict()}))
        return
    table = Table(title=f"{trained.space.name}: domain FID ({results[0].samples} images each)")
    for col in ("arch id", "res", "MACs", "domain FID", "consistency", "mse", "perceptual"):
        table.add_column(col, justify="right")
    for a, r in zip(archs, results, strict=True):
        table.add_row(
            r.arch_id,
            str(r.resolution),
            f"{trained.space.to_spec(a).macs / 1e6:.2f}M",
            f"{r.fid:.2f}",
            f"{r.consistency:.4f}",
            f"{r.consistency_mse:.4f}",
            f"{r.consistency_perceptual:.4f}",
        )
    console.print(table)


@app.command("samples")
def samples(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="gan.pt or its folder."),
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    arch: list[str] = typer.Option([], "--arch", "-a", help="Rows (default: the standard grid)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latents (the same in every row)."),
    columns: int = typer.Option(8, "--columns", min=1),
) -> None:
    """A PNG grid: one row per sub-generator, the same latents in every column."""
    with user_errors():
        trained = GAN.load_trained(checkpoint)
        rows = [(a, parse_arch(trained.space, a)) for a in arch] or None
        path = trained.render_samples(out, rows, seed, columns)
    console.print(f"wrote {path}")
