"""`nas supernet`: train a supernet by progressive shrinking, evaluate its subnets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from nas.commands import stderr, user_errors, wide_console
from nas.commands.space import parse_arch
from supernet.errors import ConfigError
from supernet.family import family_of_kind
from supernet.run import STATE_FILE
from supernet.space import as_rng, get_space

app = typer.Typer(
    help="Supernets: train (progressive shrinking) and evaluate subnets.", no_args_is_help=True
)
console = wide_console()
CLASSIFIER = family_of_kind("classifier")  # these commands are the classifier family's


@app.command("train")
def train(
    config: Path = typer.Argument(..., help="Training config YAML (see experiments/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the out dir."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (overrides out_dir)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Data-parallel Ray Train workers, each at the config's batch_size (N workers "
        "train like one at N x batch_size). Default: one process, no Ray.",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="A Ray cluster (`ray start --head`); default: local Ray."
    ),
    gpus_per_worker: float = typer.Option(
        0.0, "--gpus-per-worker", min=0, help="With --workers: GPUs per worker (NCCL)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a supernet; writes OUT/checkpoint.pt (resumable) and OUT/supernet.pt."""
    with user_errors():
        cfg = CLASSIFIER.load_train_config(config, out_dir=str(out) if out else None)
        if workers is None and (ray_address or gpus_per_worker):
            raise ConfigError("--ray-address and --gpus-per-worker go with --workers N")
        try:
            if workers is None:
                result = CLASSIFIER.train(cfg, resume=resume, progress=progress and not as_json)
            else:
                from nas.training import train_distributed  # imports Ray Train

                result = train_distributed(
                    cfg,
                    workers,
                    resume=resume,
                    progress=progress and not as_json,
                    ray_address=ray_address,
                    gpus_per_worker=gpus_per_worker,
                )
        except KeyboardInterrupt:
            stopped(Path(cfg.out_dir))
    summary = {
        "supernet": str(result.path),
        "sha256": result.sha256,
        "workers": workers or 1,
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


def stopped(out: Path) -> NoReturn:
    """Ctrl-C: one line on what is left to resume, and the shell's exit code for SIGINT."""
    checkpoint = out / STATE_FILE  # written atomically after each epoch
    if checkpoint.exists():
        left = f"{checkpoint} holds the last finished epoch: add --resume to continue"
    else:
        left = f"no epoch had finished, {out} holds nothing to resume"
    stderr.print(f"[bold red]interrupted:[/] {escape(left)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=130)


def parse_data(text: str) -> dict[str, str]:
    """`imagefolder:PATH`, `cifar10:PATH`, `cifar100:PATH` or `mnist` -> a data config."""
    kind, _, path = text.partition(":")
    if kind == "mnist" and not path:
        return {"kind": "mnist"}
    if kind in ("imagefolder", "cifar10", "cifar100") and path:
        return {"kind": kind, "path": path}
    raise ConfigError(
        f"--data {text!r}: expected imagefolder:PATH, cifar10:PATH, cifar100:PATH or mnist"
    )


@app.command("finetune")
def finetune(
    source: Path = typer.Option(
        ..., "--from", help="An official once-for-all MobileNetV3 checkpoint, or a supernet.pt."
    ),
    data: str = typer.Option(
        ..., "--data", help="imagefolder:PATH (one subfolder per class), cifar10:PATH, mnist."
    ),
    out: Path = typer.Option(..., "--out", help="The run folder (supernet.pt goes there)."),
    space: str | None = typer.Option(
        None, "--space", help="Default: the source's (ofa-mbv3-w1.0 or -w1.2 for OFA files)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A training config whose settings and phases to use (its space, data, "
        "init_from and out_dir are replaced).",
    ),
    epochs: int = typer.Option(1, "--epochs-per-phase", min=1, help="Without --config."),
    lr: float = typer.Option(0.01, "--lr", help="The first phase's; later phases use half."),
    image_size: int | None = typer.Option(
        None, "--image-size", help="imagefolder: the square size images are stored at."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Without --config."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Once-for-all transfer: a searchable supernet for your data, from trained weights
    (the classifier re-initialised for your classes), by a short progressive shrinking."""
    with user_errors():
        data_config = parse_data(data)
        if image_size is not None:
            data_config["image_size"] = image_size
        tuning = CLASSIFIER.require_finetuning()
        space_name = space or tuning.source_space(source)
        fields = {
            "space": space_name,
            "data": data_config,
            "init_from": str(source.resolve()),
            "out_dir": str(out),
        }
        if config is not None:
            cfg = CLASSIFIER.load_train_config(config, **fields)
        else:
            phases = tuning.transfer_phases(get_space(space_name), epochs, lr)
            raw = {**fields, "batch_size": batch_size, "phases": phases}
            cfg = CLASSIFIER.train_config(raw, "finetune options")
        result = CLASSIFIER.train(cfg, resume=resume, progress=progress and not as_json)
    origin = CLASSIFIER.load_trained(result.path).meta.get("initialised_from") or {}
    summary = {
        "supernet": str(result.path),
        "sha256": result.sha256,
        "initialised_from": origin,
        **{k: round(v, 4) for k, v in result.final.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console.print(
        f"supernet: {result.path}  (sha256 {result.sha256[:12]})\n"
        f"from {origin.get('kind')} {origin.get('path')}: {origin.get('copied')} tensors "
        f"copied, re-initialised {origin.get('reinitialised')}\n"
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
        trained = CLASSIFIER.load_trained(checkpoint)
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
