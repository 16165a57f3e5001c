"""`nas predictor`: fit the accuracy predictor of a trained supernet, and query it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from nas.commands import user_errors, wide_console
from nas.commands.space import parse_arch
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.predictor import check_split, fit_predictor, load_predictor, measure_archs
from supernet.space import get_space

app = typer.Typer(
    help="Accuracy predictors: fit on supernet measurements, predict archs.", no_args_is_help=True
)
console = wide_console()


@app.command("fit")
def fit(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="supernet.pt or its folder."),
    n: int = typer.Option(1000, "--n", min=12, help="Archs to measure (train + held out)."),
    held_out: int = typer.Option(200, "--held-out", min=2, help="Archs kept for evaluation."),
    epochs: int = typer.Option(300, "--epochs", min=1, help="MLP training epochs."),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="Default: predictor.pt beside it."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Measure N random archs with the supernet (resumable), fit the MLP, report tau/RMSE."""
    with user_errors():
        check_split(n, held_out)  # before opening or measuring anything
        trained = load_supernet(checkpoint)
        measurements = measure_archs(
            trained, n, seed=seed, progress=progress and not as_json, held_out=held_out
        )
        predictor = fit_predictor(
            trained.space, measurements, trained.sha256, held_out=held_out, epochs=epochs, seed=seed
        )
        path = predictor.save(out or trained.path.parent / "predictor.pt")
    metrics = {"predictor": str(path), **predictor.metrics}
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    m = predictor.metrics
    console.print(
        f"predictor: {escape(str(path))}\nheld-out archs: {m['n_held_out']}  Kendall tau: "
        f"{m['kendall_tau']:.3f}  RMSE: {m['rmse'] * 100:.2f} points of top-1 "
        f"(trained on {m['n_train']})"
    )


@app.command("predict")
def predict(
    predictor: Path = typer.Option(..., "--predictor", "-p", help="predictor.pt or its folder."),
    arch: list[str] = typer.Option(..., "--arch", "-a", help="Arch JSON, @file, largest..."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Refuse the predictor unless fitted on this checkpoint."
    ),
) -> None:
    """Predicted top-1 of archs (JSON lines)."""
    with user_errors():
        model = load_predictor(predictor, checkpoint)
        space = get_space(model.space.name)
        archs = [parse_arch(space, a) for a in arch]
        values = model.predict(archs)
    for a, v in zip(archs, values, strict=True):
        typer.echo(json.dumps({"arch_id": space.arch_id(a), "predicted_top1": round(float(v), 5)}))
