"""`nas supernet`: train a supernet by progressive shrinking, evaluate its subnets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from nas.commands import user_errors, wide_console
from nas.commands.space import parse_arch
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.train import load_train_config, train_supernet
from supernet.space import as_rng

app = typer.Typer(
    help="Supernets: train (progressive shrinking) and evaluate subnets.", no_args_is_help=True
)
console = wide_console()


@app.command("train")
def train(
    config: Path = typer.Argument(..., help="Training config YAML (see experiments/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the out dir."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (overrides out_dir)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a supernet; writes OUT/checkpoint.pt (resumable) and OUT/supernet.pt."""
    with user_errors():
        cfg = load_train_config(config, out_dir=str(out) if out else None)
        result = train_supernet(cfg, resume=resume, progress=progress and not as_json)
    summary = {
        "supernet": str(result.path),
        "sha256": result.sha256,
        "epochs": cfg.total_epochs,
        "seconds": round(result.seconds, 1),
        **{k: round(v, 4) for k, v in result.final.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console.print(
        f"supernet: {result.path}  (sha256 {result.sha256[:12]})\n"
        f"validation top-1: largest {result.final['acc_largest']:.2%}, "
        f"smallest {result.final['acc_smallest']:.2%}"
    )


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="supernet.pt or its folder."),
    arch: list[str] = typer.Option(
        [], "--arch", "-a", help="Arch JSON, @file.json, largest or smallest (repeatable)."
    ),
    random: int = typer.Option(0, "--random", min=0, help="Also evaluate N random archs."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random."),
    split: str = typer.Option("val", "--split", help="val or test."),
    recalibration: int | None = typer.Option(
        None, "--bn-images", min=1, help="Training images for BN recalibration."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Top-1 accuracy and loss of subnets, after BatchNorm recalibration."""
    with user_errors():
        trained = load_supernet(checkpoint)
        archs = [parse_arch(trained.space, a) for a in arch]
        rng = as_rng(seed)
        archs += [trained.space.sample(rng) for _ in range(random)]
        if not archs:
            archs = [trained.space.largest(), trained.space.smallest()]
        kwargs = {"split": split}
        if recalibration:
            kwargs["recalibration_images"] = recalibration
        evaluator = trained.evaluator(**kwargs)
        results = evaluator.evaluate_many(archs, progress=not as_json and len(archs) > 3)
    if as_json:
        for a, r in zip(archs, results, strict=True):
            typer.echo(json.dumps({"arch": trained.space.canonical(a), **r.to_dict()}))
        return
    table = Table(title=f"{trained.space.name} on {split} ({results[0].images} images)")
    for col in ("arch id", "r", "MACs", "top-1", "loss"):
        table.add_column(col, justify="right")
    for a, r in zip(archs, results, strict=True):
        macs = trained.space.to_spec(a).macs
        table.add_row(
            r.arch_id, str(r.resolution), f"{macs / 1e6:.2f}M", f"{r.top1:.2%}", f"{r.loss:.4f}"
        )
    console.print(table)
