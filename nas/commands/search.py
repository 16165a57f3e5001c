"""`nas search`: launch, resume, cancel, list and show searches; `nas pareto`; `nas export`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from nas import core
from nas.commands import user_errors, wide_console
from nas.config import ACCURACY
from nas.errors import QueryError
from nas.pareto import cell_text, columns_of, plot_file, to_csv, to_json
from nas.store import DEFAULT_URL, safe_url
from supernet.family import family_of_kind
from supernet.quantization import DEFAULT_CALIBRATION_IMAGES

app = typer.Typer(help="Searches: launch, resume, cancel, list, show.", no_args_is_help=True)
console = wide_console()


def db_option(default: str | None = None) -> typer.models.OptionInfo:
    return typer.Option(
        default, "--db", help=f"Database URL (default: $NAS_DATABASE_URL or {DEFAULT_URL})."
    )


def _print_outcome(outcome, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(outcome.to_dict()))
        return
    style = {"completed": "green", "infeasible": "yellow", "cancelled": "yellow"}.get(
        outcome.status, "red" if outcome.status == "failed" else "white"
    )
    console.print(
        f"search {outcome.search_id}: [{style}]{outcome.status}[/]  "
        f"{outcome.generations_done}/{outcome.generations_total} generations, "
        f"{outcome.candidates} candidates ({outcome.evaluations} evaluated), "
        f"{outcome.feasible} feasible, {outcome.seconds:.1f} s\n{escape(outcome.message or '')}",
        soft_wrap=True,
    )


@app.command("launch")
def launch(
    config: Path = typer.Argument(..., help="Search config YAML (see experiments/)."),
    db: str | None = db_option(),
    workers: int | None = typer.Option(None, "--workers", min=0, help="0: in-process; N: Ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join this Ray cluster."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Run a constrained NSGA-II search; results go to the database as it runs."""
    with user_errors():
        outcome = core.launch(config, db, workers, ray_address, progress=progress and not as_json)
    _print_outcome(outcome, as_json)


@app.command("resume")
def resume(
    search_id: int = typer.Argument(..., help="The search's id."),
    db: str | None = db_option(),
    force: bool = typer.Option(
        False, "--force", help="Take the search over from a driver that holds its lease."
    ),
    supernet: Path | None = typer.Option(
        None, "--supernet", help="The trained file at another path (same SHA-256 as recorded)."
    ),
    predictor: Path | None = typer.Option(
        None, "--predictor", help="The predictor at another path (same SHA-256 as recorded)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Continue a search whose driver died (rebuilds the study from the stored rows), with
    the files recorded at its launch."""
    with user_errors():
        outcome = core.resume(
            search_id,
            db,
            force=force,
            progress=progress and not as_json,
            supernet=supernet,
            predictor=predictor,
        )
    _print_outcome(outcome, as_json)


@app.command("cancel")
def cancel(search_id: int = typer.Argument(...), db: str | None = db_option()) -> None:
    """Ask a running search to stop after its current generation."""
    with user_errors():
        status = core.cancel(search_id, db)
    console.print(f"search {search_id}: {status}")


@app.command("list")
def list_searches(db: str | None = db_option(), as_json: bool = typer.Option(False, "--json")):
    """All searches with their status, progress and best values."""
    with user_errors():
        rows = core.list_searches(db)["items"]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"searches in {safe_url(core.database_url(db))}")
    for col in (
        "id",
        "name",
        "status",
        "generations",
        "candidates",
        "feasible",
        "best (first objective)",
        "seconds",
    ):
        table.add_column(col)
    for r in rows:
        metric = (r["objectives"] or [{"metric": ACCURACY}])[0]["metric"]
        best = r["best"].get(metric)  # None: infeasible, or no candidate yet
        table.add_row(
            str(r["id"]),
            escape(r["name"]),
            r["status"],
            r["generations"],
            str(r["candidates"]),
            str(r["feasible"]),
            "-" if best is None else f"{metric} {_fmt(metric, best)}",
            str(r["seconds"]),
        )
    console.print(table)


@app.command("show")
def show(
    search_id: int = typer.Argument(...),
    db: str | None = db_option(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One search: config, status, progress, best values, timing."""
    with user_errors():
        info = core.get_search(search_id, db)
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key, value in info.items():
        console.print(f"[bold]{key:>12}[/]  {escape(str(value))}", soft_wrap=True)


def pareto_command(
    search_id: int = typer.Argument(..., help="The search's id."),
    target: str | None = typer.Option(None, "--target", help="Only this device's objectives."),
    where: list[str] = typer.Option([], "--where", help="Tighter limit, e.g. 'peak_sram_kb<=256'."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    plot_path: Path | None = typer.Option(
        None, "--plot", help="Write a plot of the front (.png, .pdf or .svg; default .png)."
    ),
    measured: bool = typer.Option(False, "--measured", help="Rank by supernet-measured top1."),
    db: str | None = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    top: int | None = typer.Option(
        None, "--top", min=1, help="Table: only the first N rows of the front, in its order."
    ),
) -> None:
    """The non-dominated feasible candidates of a search."""
    fmt = "json" if as_json else fmt
    with user_errors():
        if fmt not in ("table", "json", "csv"):
            raise QueryError(f"--format must be table, json or csv, not {fmt!r}")
        if top is not None and fmt != "table":
            raise QueryError(f"--top shortens the table only, not --format {fmt}")
        if plot_path:
            plot_path = plot_file(plot_path)  # refuse a bad suffix before computing anything
        front = core.query_front(search_id, target, where, measured, db)
        if plot_path:
            plot_path = core.plot_front(front, plot_path, db=db)
    if fmt == "json":
        typer.echo(to_json(front))
    elif fmt == "csv":
        typer.echo(to_csv(front), nl=False)
    else:
        cols = columns_of(front, front.config)
        where_text = f" where {', '.join(map(str, front.conditions))}" if front.conditions else ""
        table = Table(
            title=f"search {search_id}: Pareto front, {len(front.front)} candidates{where_text}"
        )
        for col in cols:
            table.add_column(col, justify="left" if col == "arch_id" else "right")
        shown = front.front if top is None else front.front[:top]
        for c in shown:
            table.add_row(*[cell_text(c, col) for col in cols])
        console.print(table)
        bounded = front.front and front.front[0].coverage and any(c.bounds for c in shown)
        if bounded:
            console.print(f"[...]: the {front.front[0].coverage:.0%} prediction interval")
        if len(shown) < len(front.front):  # where the rest is: the same query, as CSV
            options = [f"--target {shlex.quote(target)}"] if target else []
            options += [f"--where {shlex.quote(w)}" for w in where]
            console.print(
                f"... and {len(front.front) - len(shown)} more; all {len(front.front)}: "
                f"nas pareto {search_id} {escape(' '.join([*options, '--format csv']))}",
                soft_wrap=True,
            )
    if plot_path and fmt == "table":
        console.print(f"plot: {escape(str(plot_path))}", soft_wrap=True)


def _fmt(col: str, value: object) -> str:
    if value is None:
        return "-"
    if col == ACCURACY and isinstance(value, float):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def export_command(
    search_id: int = typer.Argument(..., help="The search's id."),
    candidate: int = typer.Argument(..., help="The candidate number (see `nas pareto`)."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="Comma-separated: torchscript, onnx, state_dict, pt2 (torch.export), onnx_fp16, "
        "onnx_bf16, onnx_int8, tflite, tflite_int8 (LiteRT; `make tflite-env`), c_array "
        "(tflite_int8 as model_data.cc/.h, with a TFLite Micro harness main.cc). Default: "
        "torchscript, pt2, onnx, state_dict, plus the file each target runs at its precision "
        "(onnx_int8 for an MCU or int8 target, onnx_fp16 or onnx_bf16 for a GPU at fp16 or "
        "bf16).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder."),
    force: bool = typer.Option(False, "--force", help="Replace the files of a non-empty --out."),
    quantize: str | None = typer.Option(
        None, "--quantize", help="int8: also write the int8 ONNX file (static PTQ), measured."
    ),
    calibration_images: int = typer.Option(
        DEFAULT_CALIBRATION_IMAGES,
        "--calibration-images",
        help="Training images that calibrate the int8 activation ranges.",
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Fine-tuned weights of this candidate (`nas finetune`)."
    ),
    db: str | None = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the model card as JSON."),
) -> None:
    """Extract a candidate (BN recalibrated), write model files and a model card."""
    with user_errors():
        result = core.export(
            search_id,
            candidate,
            fmt,
            out,
            db,
            force=force,
            quantize=quantize,
            calibration_images=calibration_images,
            weights=weights,
        )
    if as_json:
        typer.echo(json.dumps({"out_dir": str(result.out_dir), "card": result.card}))
        return
    card = result.card
    quality = family_of_kind(card["kind"]).describe_quality(card)
    intervals = card.get("intervals", {})

    def cost(device: str, metric: str, value: float) -> str:
        bound = intervals.get("metrics", {}).get(device, {}).get(metric)
        interval = f" [{bound['low']:.4g}, {bound['high']:.4g}]" if bound else ""
        return f"{metric} {value:.4g}{interval}"

    console.print(
        f"exported search {search_id} candidate {candidate} to {result.out_dir}\n"
        f"files: {', '.join(p.name for p in result.files.values())}, model_card.json\n"
        f"{quality}; costs: "
        + "; ".join(
            f"{d}: " + ", ".join(cost(d, k, v) for k, v in m.items() if k not in ("macs", "params"))
            for d, m in card["costs"].items()
        )
        + (f" ([...]: {intervals['coverage']:.0%} prediction interval)" if intervals else ""),
        soft_wrap=True,
    )
    if "quantization" in card:
        q = card["quantization"]
        console.print(
            f"int8 (onnxruntime): top-1 val {q['top1']['int8']['val']:.2%} "
            f"(fp32 {q['top1']['fp32']['val']:.2%}), test {q['top1']['int8']['test']:.2%} "
            f"(fp32 {q['top1']['fp32']['test']:.2%}); weights {q['size_ratio']:.2f}x smaller",
            soft_wrap=True,
        )
    if "tflite" in card:
        lite = card["tflite"]
        console.print(
            "TFLite (LiteRT): "
            + "; ".join(
                f"{precision} top-1 "
                + ", ".join(f"{split} {top1:.2%}" for split, top1 in splits.items())
                + f", {lite['bytes'][precision] / 1024:.0f} kB"
                for precision, splits in lite["top1"].items()
            ),
            soft_wrap=True,
        )
    for device, shipped in card["deployment"].get("mcu", {}).items():
        if "flash_kb" in shipped:
            console.print(
                f"{device}, the int8 file: flash {shipped['flash_kb']['shipped']:.1f} kB "
                f"(predicted {shipped['flash_kb']['predicted']:.1f}), peak SRAM "
                f"{shipped['peak_sram_kb']['shipped']:.1f} kB (predicted "
                f"{shipped['peak_sram_kb']['predicted']:.1f})",
                soft_wrap=True,
            )
        if "flash_kb_tflite" in shipped:
            console.print(
                f"{device}, the int8 flatbuffer: flash "
                f"{shipped['flash_kb_tflite']['shipped']:.1f} kB (predicted "
                f"{shipped['flash_kb_tflite']['predicted']:.1f})",
                soft_wrap=True,
            )
        if "tflm_arena" in shipped:
            arena = shipped["tflm_arena"]
            console.print(
                f"{device}, the int8 flatbuffer in TFLite Micro: runs in a "
                f"{arena['shipped']:.1f} kB arena (head {arena['head_kb']:.1f}, "
                f"tail {arena['tail_kb']:.1f}), predicted peak SRAM "
                f"{_fmt('', arena['predicted'])} kB",
                soft_wrap=True,
            )
    if "tflm" in card.get("tflite", {}):
        tflm = card["tflite"]["tflm"]
        agreement = tflm["agreement_with_litert"]
        reference, default = agreement["reference_kernels"], agreement["default_kernels"]
        console.print(
            f"TFLite Micro vs LiteRT on {agreement['images']} {agreement['split']} images: "
            f"outputs within {reference['max_abs_diff_lsb']} LSB of its reference kernels "
            f"({reference['identical_fraction']:.2%} identical), same class as its default "
            f"kernels for {default['same_class_fraction']:.2%}; TFLM top-1 "
            f"{tflm['top1'][agreement['split']]:.2%}",
            soft_wrap=True,
        )
    if "c_array" in card:
        array = card["c_array"]
        console.print(
            f"C array for TFLite Micro: {', '.join(card['deployment']['c_array']['files'])}; "
            f"{array['resolver']} ({', '.join(array['ops'])}), arena {array['arena_bytes']} "
            f"bytes (measured {array['arena']['measured_bytes']} + "
            f"{array['arena']['margin_bytes']} margin); build: see main.cc",
            soft_wrap=True,
            markup=False,
        )
    for warning in card.get("warnings", []):
        console.print(f"warning: {warning}", soft_wrap=True, markup=False)


def finetune_command(
    search_id: int = typer.Argument(..., help="The search's id."),
    candidate: int = typer.Argument(..., help="The candidate number (see `nas pareto`)."),
    qat: bool = typer.Option(
        True, "--qat/--float", help="Quantization-aware (int8 fake quantization) or float."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1),
    lr: float = typer.Option(0.005, "--lr", help="Peak learning rate (cosine schedule)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    threshold: float = typer.Option(
        0.5,
        "--threshold-points",
        help="QAT runs only where post-training int8 loses more top-1 points than this "
        "(0: always).",
    ),
    calibration_images: int = typer.Option(
        DEFAULT_CALIBRATION_IMAGES, "--calibration-images", min=1
    ),
    seed: int = typer.Option(0, "--seed", min=0),
    out: Path | None = typer.Option(None, "--out", help="Output folder."),
    db: str | None = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Fine-tune a candidate from its inherited weights, distilling from the supernet's
    largest subnet: quantization-aware where post-training int8 loses too much."""
    settings = dict(
        qat=qat,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        threshold_points=threshold,
        calibration_images=calibration_images,
        seed=seed,
    )
    with user_errors():
        outcome = core.finetune(search_id, candidate, settings, out, db, progress=not as_json)
    report = outcome.report
    if as_json:
        typer.echo(json.dumps(report))
        return
    console = wide_console()
    fp32, int8 = report["fp32_top1"], report["int8_top1"]
    shipped = report.get("shipped_ptq_drop_points")
    console.print(
        f"candidate {candidate}: fp32 top-1 {fp32['inherited']:.2%}, post-training int8 "
        f"{int8['ptq']:.2%} in torch (drop {report['ptq_drop_points']:.2f} points, val)"
        + ("" if shipped is None else f"; the int8 file in onnxruntime drops {shipped:.2f}"),
        soft_wrap=True,
    )
    if not outcome.trained:
        console.print(report["reason"], soft_wrap=True)
        return
    console.print(
        f"after {settings.epochs} epochs: fp32 {fp32['after']:.2%}, int8 {int8['after']:.2%} "
        f"(drop {report['int8_drop_points_after']:.2f} points from the inherited fp32)",
        soft_wrap=True,
    )
    console.print(
        f"weights: {outcome.weights}\nexport: nas export {search_id} {candidate} "
        f"--weights {outcome.weights} --quantize int8",
        soft_wrap=True,
    )


def export_job_command(
    export_id: int = typer.Argument(..., help="The export's id (from the HTTP API)."),
    db: str | None = db_option(),
) -> None:
    """Run an export the HTTP API queued (what the server's export workers run)."""
    with user_errors():
        info = core.run_export_job(export_id, db)
    typer.echo(json.dumps({k: v for k, v in info.items() if k != "card"}))
    if info["status"] == "failed":
        raise typer.Exit(1)
