"""`nas predictor`: fit the accuracy predictor of a trained supernet, and query it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from latency_models.uncertainty import DEFAULT_COVERAGE, bound_keys
from nas.commands import user_errors, wide_console
from nas.commands.space import parse_arch
from nas.workers import measurement_pool
from supernet.errors import ConfigError
from supernet.family import TrainedModel, family_of_kind
from supernet.io import resolve_artifact_path
from supernet.space import Arch

app = typer.Typer(
    help="Accuracy predictors: fit on supernet measurements, predict archs.", no_args_is_help=True
)
console = wide_console()
CLASSIFIER = family_of_kind("classifier")  # accuracy predictors are the classifier family's
PREDICTORS = CLASSIFIER.require_predictors()


@app.command("fit")
def fit(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="supernet.pt or its folder."),
    n: int = typer.Option(1000, "--n", min=12, help="Archs to measure (train + held out)."),
    held_out: int = typer.Option(200, "--held-out", min=2, help="Archs kept for evaluation."),
    model: str = typer.Option(
        "gbdt",
        "--model",
        help="gbdt (gradient-boosted trees, the default: they rank held-out archs better) or mlp.",
    ),
    epochs: int = typer.Option(300, "--epochs", min=1, help="MLP training epochs (--model mlp)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="A file, or a folder to write predictor.pt into. Default: beside the checkpoint.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing predictor file (searches recorded with its SHA-256 can then "
        "no longer resume).",
    ),
    int8_sample: int = typer.Option(
        0,
        "--int8-sample",
        min=0,
        help="Also measure top-1 after int8 quantization on this many of the archs and fit "
        "a model of the drop, so that searches with an int8 target can predict top1_int8.",
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="Measure with N Ray actors of one thread each (0: in this process). On a small "
        "CPU processes scale where threads do not: two actors on 2 cores measure about 1.4x "
        "as fast as this process.",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="With --workers: a Ray cluster; default: a local Ray."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Measure N random archs with the supernet (resumable), fit the model, report tau/RMSE."""
    with user_errors():
        PREDICTORS.check_split(n, held_out)  # before opening or measuring anything
        if model not in PREDICTORS.models:
            choices = ", ".join(PREDICTORS.models)
            raise typer.BadParameter(f"--model {model!r}: choose from {choices}")
        if ray_address and not workers:
            raise typer.BadParameter("--ray-address goes with --workers N")
        path = out or predictor_path(checkpoint)
        if path.is_dir():  # a folder names where the family's predictor file goes
            path = path / CLASSIFIER.predictor_file_name
        if path.exists() and not force:
            raise ConfigError(
                f"{path} already holds a predictor (searches may be recorded with its "
                "SHA-256); pass --force to replace it or --out to write another file"
            )
        trained = CLASSIFIER.load_trained(checkpoint)
        measurements = PREDICTORS.measure(
            trained,
            n,
            seed=seed,
            progress=progress and not as_json,
            held_out=held_out,
            measure=on_actors(trained, workers, ray_address) if workers else None,
        )
        predictor = PREDICTORS.fit(
            trained,
            measurements,
            held_out=held_out,
            epochs=epochs,
            seed=seed,
            model=model,
        )
        if int8_sample:
            archs = [m.arch for m in measurements[: min(int8_sample, n)]]
            predictor.int8_drop = PREDICTORS.fit_int8_drop(
                trained, archs, progress=progress and not as_json
            )
        path = predictor.save(path)
    metrics = {"predictor": str(path), **predictor.metrics}
    if predictor.int8_drop is not None:
        metrics["int8_drop"] = predictor.int8_drop.metrics
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    m = predictor.metrics
    console.print(
        f"predictor: {escape(str(path))}\nheld-out archs: {m['n_held_out']}  Kendall tau: "
        f"{m['kendall_tau']:.3f}  RMSE: {m['rmse'] * 100:.2f} points of top-1 "
        f"({m['model']}, trained on {m['n_train']})"
    )
    if "interval_coverage" in m:
        console.print(
            f"{m['interval_nominal']:.0%} interval: mean width {m['interval_width'] * 100:.2f} "
            f"points; holds {m['interval_coverage']:.0%} of the held-out archs, each against "
            "the interval from the others"
        )
    else:
        console.print("no intervals: they need at least 3 held-out archs (--held-out)")
    if predictor.int8_drop is not None:
        d = predictor.int8_drop.metrics
        console.print(
            f"int8 drop model ({d['n']} archs measured): mean drop {d['mean_drop_points']:.2f} "
            f"points; leave-one-out RMSE {d['loo_rmse_points']:.2f} points (the mean alone: "
            f"{d['mean_only_loo_rmse_points']:.2f})"
        )


def predictor_path(checkpoint: Path) -> Path:
    """Where `fit` writes without --out: the family's predictor file beside the checkpoint
    (`checkpoint`: the file or its run folder), as `load_trained` would resolve it."""
    resolved = resolve_artifact_path(checkpoint, (CLASSIFIER.file_name,)).resolve()
    return resolved.parent / CLASSIFIER.predictor_file_name


def on_actors(
    trained: TrainedModel, workers: int, address: str | None
) -> Callable[[Sequence[Arch]], Iterator[Any]]:
    """`measure_archs`'s `measure` on `workers` Ray actors, started only when some arch is
    left to measure (a resumed fit with every arch recorded starts no Ray), and stopped when
    the last one is done."""

    def measure(archs: Sequence[Arch]) -> Iterator[Any]:
        with measurement_pool(trained.path, trained.sha256, workers, address) as pool:
            yield from pool.measure(archs)

    return measure


@app.command("predict")
def predict(
    predictor: Path = typer.Option(..., "--predictor", "-p", help="predictor.pt or its folder."),
    arch: list[str] = typer.Option(..., "--arch", "-a", help="Arch JSON, @file, largest..."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Refuse the predictor unless fitted on this checkpoint."
    ),
    coverage: float = typer.Option(
        DEFAULT_COVERAGE,
        "--coverage",
        help="Coverage of the interval around each prediction, in (0, 1).",
    ),
) -> None:
    """Predicted top-1 of archs (JSON lines), with its interval at --coverage
    (predicted_top1_low/_high) where the predictor kept its held-out residuals."""
    with user_errors():
        if not 0.0 < coverage < 1.0:
            raise typer.BadParameter(f"--coverage {coverage}: choose a number in (0, 1)")
        model = PREDICTORS.load(predictor, checkpoint)
        space = model.space
        archs = [parse_arch(space, a) for a in arch]
        predicted = model.predict(archs)
        rows = [{"predicted_top1": float(v)} for v in predicted]
        if model.has_bounds:
            low_key, high_key = bound_keys("predicted_top1")
            for row, low, high in zip(rows, *model.bounds_of(predicted, coverage), strict=True):
                row[low_key], row[high_key] = float(low), float(high)
        else:  # a file fitted before intervals, or on under 3 held-out archs
            typer.echo(
                "note: this predictor kept no held-out residuals, so it gives no intervals; "
                "refit it with `nas predictor fit` to get them",
                err=True,
            )
    for a, row in zip(archs, rows, strict=True):
        rounded = {k: round(v, 5) for k, v in row.items()}
        typer.echo(json.dumps({"arch_id": space.arch_id(a), **rounded}))
