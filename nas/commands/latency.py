"""`nas latency`: predict costs, measure subnets, calibrate profiles, build and validate the
local CPU table, train the learned predictor.

    nas latency predict   --hardware H [--hardware H2] --space S --arch A
    nas latency measure   --device cpu|cuda --space S --n N [--batch B] [--out CSV]
    nas latency calibrate --hardware H --measurements CSV --out NEW.yaml
    nas latency adapt     --hardware BASE --measurements FEW.csv --out MY-DEVICE.yaml
    nas latency adapt     --hardware KNOWN-GPU --only stack --measurements FEW.csv --out MINE.yaml
    nas latency build-lut --device cpu --space S [--out PATH]
    nas latency validate  --hardware local-cpu [--hardware H2] --space S --n 50 [--plot PNG]
    nas latency validate  --hardware H --measurements CSV      # networks measured elsewhere
    nas latency fit       --measurements CSV --out PROFILE.yaml

A door over nas.profiling: each command parses its options, calls one core function and
prints the result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

import latency_models as lm
import supernet
from latency_models.uncertainty import DEFAULT_COVERAGE, bound_keys
from nas import profiling
from nas.commands import user_errors, wide_console
from nas.commands.space import parse_arch

app = typer.Typer(
    help="Cost models: predict, measure, calibrate, build the local CPU table, validate.",
    no_args_is_help=True,
)
console = wide_console()

SPACE_OPTION = typer.Option(
    ...,
    "--space",
    "-s",
    help="A preset name (see `nas space list`) or a YAML file defining a space.",
)
HARDWARE_OPTION = typer.Option(
    ..., "--hardware", "-H", help="A profile name (see `nas hardware list`) or a YAML path."
)
DEVICE_OPTION = typer.Option("cpu", "--device", help="Where to time: cpu or cuda.")
RESOLUTION_OPTION = typer.Option(
    None, "--resolution", "-r", help="Sample only these resolutions (repeatable)."
)


def _finite(value: Any) -> Any:
    """`value` with every float that is not finite (a figure of too few or tied rows) as None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _json(value: Any) -> str:
    """One line of standard JSON: NaN and Infinity are null (never the non-standard words)."""
    return json.dumps(_finite(value), allow_nan=False)


@app.command("predict")
def predict(
    hardware: list[str] = HARDWARE_OPTION,
    space: str = SPACE_OPTION,
    arch: str = typer.Option(
        ..., "--arch", "-a", help="Arch JSON, @file.json, or the words largest / smallest."
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Samples per inference."),
    precision: str | None = typer.Option(None, "--precision", help="GPU precision."),
    runtime: str | None = typer.Option(
        None, "--runtime", help="GPU runtime: eager (default), compiled, tensorrt."
    ),
    stack: str | None = typer.Option(
        None, "--stack", help="GPU software stack (see profiles/stacks/): pytorch-2-eager, ..."
    ),
    layout: str | None = typer.Option(None, "--layout", help="GPU layout: nhwc or nchw."),
    coverage: float = typer.Option(
        DEFAULT_COVERAGE,
        "--coverage",
        help="Coverage of the prediction intervals (0.9: 90%), where a profile states its "
        "residuals; JSON adds METRIC_low and METRIC_high.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Predict an arch's costs on one or more devices, with prediction intervals."""
    with user_errors():
        s = supernet.get_space(space)
        parsed = parse_arch(s, arch)
        spec = s.to_spec(parsed, batch=batch)
        given = {"precision": precision, "runtime": runtime, "stack": stack, "layout": layout}
        options = {k: v for k, v in given.items() if v is not None}
        costs = [(h, lm.load_hardware(h).predict(spec, coverage, **options)) for h in hardware]
    if as_json:
        for name, cost in costs:
            typer.echo(_json({"hardware": name, **cost}))
        return
    table = Table(title=f"{s.name} arch {s.arch_id(parsed)} (batch {batch})")
    bounds = {key for _, c in costs for m in c for key in bound_keys(m) if key in c}
    metrics = [m for m in dict.fromkeys(k for _, c in costs for k in c) if m not in bounds]
    table.add_column("hardware")
    for m in metrics:
        table.add_column(m, justify="right")
    for name, cost in costs:
        table.add_row(name, *(_with_interval(cost, m, coverage) for m in metrics))
    console.print(table)


def _with_interval(cost: dict[str, Any], metric: str, coverage: float) -> str:
    """`1.93 (90%: 1.71-2.20)` where the prediction has bounds, else the value alone."""
    low, high = (cost.get(k) for k in bound_keys(metric))
    if low is None or high is None:
        return _fmt(cost.get(metric))
    if low == high:
        return f"{_fmt(cost[metric])} (exact)"
    return f"{_fmt(cost[metric])} ({coverage:.0%}: {_fmt(low)}–{_fmt(high)})"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


@app.command("measure")
def measure(
    space: str = SPACE_OPTION,
    device: str = DEVICE_OPTION,
    n: int = typer.Option(20, "--n", "-n", min=1, help="How many random subnets."),
    batch: int = typer.Option(1, "--batch", min=1, help="Samples per inference."),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32 (cpu); cuda: also tf32/fp16/bf16."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random subnets."),
    resolutions: list[int] | None = RESOLUTION_OPTION,
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (cpu)."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Warm-up runs per subnet."),
    repeats: int = typer.Option(100, "--repeats", min=1, help="Timed runs per subnet."),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Interleaved passes over the subnets."),
    statistic: str = typer.Option("median", "--statistic", help="latency_ms: median or min."),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV to write."),
) -> None:
    """Time N random subnets end to end and write a CSV (one row per subnet)."""
    with user_errors():
        result = profiling.measure(
            supernet.get_space(space), device=device, n=n, batch=batch, precision=precision,
            seed=seed, resolutions=resolutions, threads=threads, warmup=warmup,
            repeats=repeats, rounds=rounds, statistic=statistic, out=out,
        )  # fmt: skip
    values = result.latencies
    console.print(
        f"wrote {len(result.rows)} rows to {result.path}: latency "
        f"{values.min():.3f}..{values.max():.3f} ms "
        f"({statistic} of {repeats} runs, {threads} thread(s), {result.processor})"
    )


@app.command("calibrate")
def calibrate(
    hardware: str = HARDWARE_OPTION,
    measurements: list[Path] = typer.Option(
        ..., "--measurements", "-m", help="Measurement CSV (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the new profile."),
    name: str | None = typer.Option(None, "--name", help="Name of the new profile."),
) -> None:
    """Fit a profile's free parameters to measurements and write a new profile file."""
    with user_errors():
        result = profiling.calibrate(hardware, measurements, out, name)
    fit = result.fit
    table = Table(title=f"calibrated {result.model.name} on {result.rows} measurements -> {out}")
    for col in ("figure", "before", "after"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for key in fit.before:
        table.add_row(key, f"{fit.before[key]:.1%}", f"{fit.after[key]:.1%}")
    console.print(table)


@app.command("adapt")
def adapt(
    hardware: str = typer.Option(
        ..., "--hardware", "-H", help="The profile of a similar device to start from."
    ),
    measurements: list[Path] = typer.Option(
        ..., "--measurements", "-m", help="Measurement CSV of 10-20 networks (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the new profile."),
    name: str | None = typer.Option(None, "--name", help="Name of the new profile."),
    only: str | None = typer.Option(
        None,
        "--only",
        help="Adapt only the device, or only the software stack (a known GPU timed in "
        "another framework or on another host): device or stack.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Fit a profile for your device from a few measured networks (few-shot): the base
    profile's overall speed and overheads move, the rest keeps its values."""
    with user_errors():
        result = profiling.adapt(hardware, measurements, out, name, only=only)
    if as_json:
        typer.echo(_json({"out": str(out), "before": result.before, "after": result.after}))
        return
    table = Table(title=f"adapted {result.model.name} on {result.rows} measurements -> {out}")
    for col in ("figure", result.model.name, "adapted (in-sample)"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for key, label, fmt in FIGURES:
        table.add_row(label, fmt.format(result.before[key]), fmt.format(result.after[key]))
    console.print(table)
    console.print(
        "check it on networks outside the fit: nas latency validate -H "
        f"{out} --measurements OTHER.csv"
    )


FIGURES = (  # key, label, format: what validate and adapt print
    ("within_5pct", "within ±5%", "{:.0%}"),
    ("within_10pct", "within ±10%", "{:.0%}"),
    ("mape", "MAPE", "{:.1%}"),
    ("max_error", "max error", "{:.1%}"),
    ("bias", "bias", "{:+.1%}"),
    ("kendall_tau", "tau", "{:.3f}"),
    ("macs_kendall_tau", "MACs tau", "{:.3f}"),
)


@app.command("build-lut")
def build_lut(
    space: str = SPACE_OPTION,
    device: str = DEVICE_OPTION,
    batch: int = typer.Option(1, "--batch", min=1, help="Samples per inference."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Warm-up runs per block/subnet."),
    repeats: int = typer.Option(
        100, "--repeats", min=1, help="Timed runs per block/subnet (median)."
    ),
    resolutions: list[int] | None = typer.Option(
        None, "--resolution", "-r", help="Only these resolutions (default: all of the space)."
    ),
    calibrate_n: int = typer.Option(
        30, "--calibrate", min=0, help="Calibration subnets measured end to end (0: none)."
    ),
    calibration_seed: int = typer.Option(1, "--calibration-seed", help="Their seed."),
    rounds: int = typer.Option(
        10, "--rounds", min=1, help="Interleaved passes over blocks/subnets."
    ),
    statistic: str = typer.Option("median", "--statistic", help="Subnet statistic: median, min."),
    name: str = typer.Option("local-cpu", "--name", help="Profile name."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Profile to write (default: $NAS_PROFILE_DIR/NAME.yaml or runs/profiles/NAME.yaml).",
    ),
    merge: bool = typer.Option(
        True, "--merge/--replace", help="Keep entries of an existing profile at --out."
    ),
) -> None:
    """Time every distinct block of a space into a `measured` profile, then calibrate it on
    separate subnets measured end to end."""
    with user_errors():
        result = profiling.build_lut(
            supernet.get_space(space), device=device, batch=batch, threads=threads,
            warmup=warmup, repeats=repeats, resolutions=resolutions, calibrate_n=calibrate_n,
            calibration_seed=calibration_seed, rounds=rounds, statistic=statistic, name=name,
            out=out, merge=merge,
        )  # fmt: skip
    cal = result.calibration
    console.print(
        f"wrote {result.path}: {result.blocks} blocks of {result.space} at batch {batch} "
        f"({result.entries} entries in all)"
    )
    if calibrate_n:
        console.print(
            f"calibration on {calibrate_n} subnets: scale {cal['scale']}, overhead "
            f"{cal['overhead_ms']} ms, per block {cal['per_block_ms']} ms, per layer "
            f"{cal['per_layer_ms']} ms; MAPE "
            f"{cal['mape_uncalibrated']:.1%} uncalibrated -> {cal['mape_calibrated']:.1%}"
        )


@app.command("validate")
def validate(
    hardware: list[str] = HARDWARE_OPTION,
    space: str | None = typer.Option(
        None,
        "--space",
        "-s",
        help="A preset name or a space YAML file (not needed with --measurements).",
    ),
    n: int = typer.Option(50, "--n", "-n", min=2, help="How many random subnets."),
    seed: int = typer.Option(2, "--seed", help="Seed of the validation subnets."),
    resolutions: list[int] | None = RESOLUTION_OPTION,
    batch: int = typer.Option(1, "--batch", min=1, help="Samples per inference."),
    threads: int | None = typer.Option(None, "--threads", help="Default: the profile's."),
    repeats: int | None = typer.Option(None, "--repeats", help="Default: the profile's."),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Default: the profile's."),
    statistic: str | None = typer.Option(None, "--statistic", help="Default: the profile's."),
    noise_floor: bool = typer.Option(
        False,
        "--noise-floor",
        help="Also time a second copy of each subnet, interleaved, and "
        "report how well two measurements agree (the best any predictor can do).",
    ),
    recalibrate: bool = typer.Option(
        False,
        "--recalibrate",
        help="Also time the calibration subnets of the first measured profile, interleaved with "
        "the validation subnets, and report every profile once more with one scale fitted on "
        "them: it cancels a change of the machine's speed since the profiles were built.",
    ),
    measurements: Path | None = typer.Option(
        None, "--measurements", "-m", help="Reuse these measurements instead of timing."
    ),
    save: Path | None = typer.Option(None, "--save", help="Write the measurements to a CSV."),
    plot: Path | None = typer.Option(None, "--plot", help="Write predicted vs measured (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per hardware."),
) -> None:
    """Measure N random subnets end to end (none used for calibration or training), or read
    networks measured elsewhere from --measurements, and compare each profile's predictions:
    within ±5% / ±10%, MAPE, Kendall tau, and the Kendall tau of MACs alone."""
    with user_errors():
        if space is None and measurements is None:
            raise profiling.MeasurementError("give --space (to time subnets) or --measurements")
        report = profiling.validate(
            hardware, space, n=n, seed=seed, resolutions=resolutions,
            batch=batch, threads=threads, repeats=repeats, rounds=rounds, statistic=statistic,
            noise_floor=noise_floor, recalibrate=recalibrate, measurements=measurements,
            save=save,
        )  # fmt: skip
    figures = [(v, v.figures()) for v in report.rows]
    if as_json:
        for v, f in figures:
            typer.echo(_json({"hardware": v.hardware, "space": report.space, **f}))
    else:
        what = f"{report.space}: " if report.space else ""
        table = Table(title=f"{what}{report.subnets} networks measured end to end vs predicted")
        table.add_column("hardware")
        for _, label, _ in FIGURES:
            table.add_column(label, justify="right")
        for v, f in figures:
            table.add_row(v.hardware, *(fmt.format(f[key]) for key, _, fmt in FIGURES))
        console.print(table)
    if plot is not None:
        profiling.plot_validations([*report.validations, *report.rescaled], report.space, plot)
        console.print(f"wrote {plot}")


@app.command("fit")
def fit_learned(
    measurements: list[Path] = typer.Option(
        ..., "--measurements", "-m", help="Measurement CSV (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the learned profile."),
    name: str | None = typer.Option(None, "--name", help="Profile name (default: file stem)."),
    trees: int = typer.Option(300, "--trees", min=1, help="Boosting rounds."),
    depth: int = typer.Option(3, "--depth", min=1, help="Depth of each tree."),
    learning_rate: float = typer.Option(0.05, "--learning-rate", min=1e-4, help="Shrinkage."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsampling."),
) -> None:
    """Train the learned predictor (gradient-boosted trees) on measurement CSVs."""
    with user_errors():
        result = profiling.fit_learned(
            measurements, out, name=name, trees=trees, depth=depth,
            learning_rate=learning_rate, seed=seed,
        )  # fmt: skip
    console.print(
        f"wrote {out}: {trees} trees of depth {depth} on {result.rows} rows, "
        f"training MAPE {result.train_mape:.1%}"
    )
