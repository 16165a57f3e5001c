"""`nas latency`: predict costs, measure subnets, calibrate profiles, build and validate the
local CPU table, train the learned predictor.

    nas latency predict   --hardware H [--hardware H2] --space S --arch A
    nas latency measure   --device cpu|cuda --space S --n N [--batch B] [--out CSV]
    nas latency calibrate --hardware H --measurements CSV --out NEW.yaml
    nas latency build-lut --device cpu --space S [--out PATH]
    nas latency validate  --hardware local-cpu [--hardware H2] --space S --n 50 [--plot PNG]
    nas latency fit       --measurements CSV --out PROFILE.yaml

Every timing runs on end-to-end networks extracted from the space's supernet
(`supernet.build(space).extract(arch)`), with fixed threads, warm-up runs, and repeats spread
over interleaved rounds, so that a passing disturbance does not hit one network only.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import latency_models as lm
import supernet
from latency_models.errors import HardwareError, MeasurementError
from latency_models.hardware import read_yaml
from latency_models.learned import train
from latency_models.lut import BlockTableModel
from latency_models.measure import (
    Timing,
    TimingResult,
    device_name,
    measure_block_table,
    time_module,
)
from nas.commands import stderr, user_errors, wide_console
from nas.commands.space import parse_arch
from supernet import Arch, SearchSpace
from supernet.errors import InvalidArchError

app = typer.Typer(
    help="Cost models: predict, measure, calibrate, build the local CPU table, validate.",
    no_args_is_help=True,
)
console = wide_console()

SPACE_OPTION = typer.Option(..., "--space", "-s", help="A preset name (see `nas space list`).")
HARDWARE_OPTION = typer.Option(
    ..., "--hardware", "-H", help="A profile name (see `nas hardware list`) or a YAML path."
)
DEVICE_OPTION = typer.Option("cpu", "--device", help="Where to time: cpu or cuda.")
RESOLUTION_OPTION = typer.Option(
    None, "--resolution", "-r", help="Sample only these resolutions (repeatable)."
)
METRICS = ("latency_ms", "peak_sram_kb", "flash_kb")
CSV_FIELDS = (
    "space",
    "arch_id",
    "arch",
    "batch",
    "precision",
    "device",
    "processor",
    "threads",
    "repeats",
    "statistic",
    "latency_ms",
    "latency_min_ms",
    "latency_median_ms",
    "macs",
    "params",
    "torch",
)


# ----- measuring end to end ---------------------------------------------------------------------


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields advance(n)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def sample_archs(
    space: SearchSpace,
    n: int,
    seed: int,
    exclude: set[str] = frozenset(),
    resolutions: Sequence[int] | None = None,
) -> list[Arch]:
    """`n` distinct random archs whose ids are not in `exclude` (at one of `resolutions`, if
    given)."""
    rng = np.random.default_rng(seed)
    archs: dict[str, Arch] = {}
    for _ in range(100 * n + 100):
        arch = space.sample(rng)
        if resolutions:
            arch = space.at_resolution(arch, int(rng.choice(list(resolutions))))
        aid = space.arch_id(arch)
        if aid not in exclude and aid not in archs:
            archs[aid] = arch
            if len(archs) == n:
                return list(archs.values())
    raise HardwareError(
        f"could not sample {n} distinct archs of {space.name!r} outside the excluded ones"
    )


def measure_archs(
    space: SearchSpace,
    archs: Sequence[Arch],
    timing: Timing,
    batch: int,
    rounds: int,
    description: str,
    instances: int = 1,
) -> list[list[TimingResult]]:
    """Time each arch's extracted network end to end. The repeats are split over `rounds`
    passes through all networks (each pass re-warms every network), so that a passing
    disturbance spreads over all of them. With `instances` > 1, each arch is also timed as
    other, separately extracted copies, interleaved: their agreement is the noise floor.
    Returns one list of results per instance."""
    import torch

    torch.manual_seed(0)
    net = supernet.build(space)
    copies = [[net.extract(arch).eval() for arch in archs] for _ in range(instances)]
    shapes = [space.input_shape(arch, batch) for arch in archs]
    per_round = Timing(
        timing.device,
        timing.precision,
        timing.threads,
        max(1, timing.warmup // rounds),
        max(1, math.ceil(timing.repeats / rounds)),
    )
    times = [[[] for _ in archs] for _ in copies]
    with progress_bar(description, rounds * len(archs) * instances) as advance:
        for _ in range(rounds):
            for i, shape in enumerate(shapes):
                for c, nets in enumerate(copies):
                    times[c][i].extend(time_module(nets[i], shape, per_round).times_ms)
                    advance(1)
    return [[TimingResult.of(t) for t in per_copy] for per_copy in times]


def measurement_rows(
    space: SearchSpace,
    archs: Sequence[Arch],
    results: Sequence[TimingResult],
    timing: Timing,
    batch: int,
    statistic: str,
) -> list[dict[str, Any]]:
    import torch

    processor = device_name(timing.device)
    rows = []
    for arch, result in zip(archs, results, strict=True):
        spec = space.to_spec(arch, batch=batch)
        rows.append(
            {
                "space": space.name,
                "arch_id": space.arch_id(arch),
                "arch": space.to_json(arch),
                "batch": batch,
                "precision": timing.precision,
                "device": timing.device,
                "processor": processor,
                "threads": timing.threads,
                "repeats": result.repeats,
                "statistic": statistic,
                "latency_ms": round(result.stat(statistic), 5),
                "latency_min_ms": round(result.min_ms, 5),
                "latency_median_ms": round(result.median_ms, 5),
                "macs": spec.macs,
                "params": spec.params,
                "torch": torch.__version__,
            }
        )
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class Measurements:
    specs: list[lm.NetworkSpec]
    rows: list[dict[str, str]]
    metrics: dict[str, np.ndarray]
    precisions: list[str]

    def arch_ids(self) -> list[str]:
        return [r["arch_id"] for r in self.rows if r.get("arch_id")]


def load_measurements(paths: Sequence[Path]) -> Measurements:
    """Rows of measurement CSVs as specs and measured metrics. A row names its network with
    `space` + `arch` (+ `batch`), or `network` (a reference network of latency_models.zoo)."""
    specs: list[lm.NetworkSpec] = []
    rows: list[dict[str, str]] = []
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    precisions: list[str] = []
    spaces: dict[str, SearchSpace] = {}
    for path in paths:
        if not path.is_file():
            raise MeasurementError(f"measurement file {path} does not exist")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or ())
            present = [m for m in METRICS if m in columns]
            if not present:
                raise MeasurementError(
                    f"{path}: no measured column; expected one of: {', '.join(METRICS)}"
                )
            if not ({"space", "arch"} <= columns or "network" in columns):
                raise MeasurementError(
                    f"{path}: rows must name a network: columns space and arch, or network"
                )
            for line, row in enumerate(reader, start=2):
                specs.append(_row_spec(path, line, row, spaces))
                rows.append(row)
                precisions.append(row.get("precision") or "")
                for metric in METRICS:
                    values[metric].append(_row_value(path, line, row, metric))
    if not specs:
        raise MeasurementError(f"no rows in {', '.join(map(str, paths))}")
    metrics = {m: np.array(v) for m, v in values.items() if not np.isnan(v).any()}
    if not metrics:
        raise MeasurementError("no measured column is filled in every row")
    return Measurements(specs, rows, metrics, precisions)


def _row_spec(path: Path, line: int, row: dict[str, str], spaces: dict) -> lm.NetworkSpec:
    try:
        batch = int(row.get("batch") or 1)
    except ValueError:
        raise MeasurementError(f"{path} line {line}: column batch: {row['batch']!r}") from None
    if row.get("network"):
        try:
            return lm.zoo_spec(row["network"], batch=batch)
        except KeyError as err:
            raise MeasurementError(f"{path} line {line}: column network: {err.args[0]}") from None
    name = row.get("space") or ""
    if name not in spaces:
        spaces[name] = supernet.get_space(name)
    space = spaces[name]
    try:
        return space.to_spec(space.from_json(row.get("arch") or ""), batch=batch)
    except InvalidArchError as err:
        raise MeasurementError(f"{path} line {line}: column arch: {err}") from None


def _row_value(path: Path, line: int, row: dict[str, str], metric: str) -> float:
    text = row.get(metric)
    if text in (None, ""):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise MeasurementError(f"{path} line {line}: column {metric}: {text!r}") from None
    if not value > 0:
        raise MeasurementError(f"{path} line {line}: column {metric}: must be > 0, got {value}")
    return value


# ----- commands ---------------------------------------------------------------------------------


@app.command("predict")
def predict(
    hardware: list[str] = HARDWARE_OPTION,
    space: str = SPACE_OPTION,
    arch: str = typer.Option(
        ..., "--arch", "-a", help="Arch JSON, @file.json, or the words largest / smallest."
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Samples per inference."),
    precision: str | None = typer.Option(None, "--precision", help="GPU precision."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Predict an arch's costs on one or more devices."""
    with user_errors():
        s = supernet.get_space(space)
        parsed = parse_arch(s, arch)
        spec = s.to_spec(parsed, batch=batch)
        options = {} if precision is None else {"precision": precision}
        costs = [(h, lm.load_hardware(h).predict(spec, **options)) for h in hardware]
    if as_json:
        for name, cost in costs:
            typer.echo(json.dumps({"hardware": name, **cost}))
        return
    table = Table(title=f"{s.name} arch {s.arch_id(parsed)} (batch {batch})")
    metrics = [m for m in dict.fromkeys(k for _, c in costs for k in c)]
    table.add_column("hardware")
    for m in metrics:
        table.add_column(m, justify="right")
    for name, cost in costs:
        table.add_row(name, *(_fmt(cost.get(m)) for m in metrics))
    console.print(table)


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
        s = supernet.get_space(space)
        timing = Timing(device, precision, threads, warmup, repeats)
        _check_statistic(statistic)
        archs = sample_archs(s, n, seed, resolutions=resolutions)
        (results,) = measure_archs(s, archs, timing, batch, rounds, f"timing {n} subnets")
        rows = measurement_rows(s, archs, results, timing, batch, statistic)
        path = out or Path("runs/latency") / f"{s.name}-{device}-b{batch}-{precision}.csv"
        write_csv(path, rows, CSV_FIELDS)
    values = np.array([r["latency_ms"] for r in rows])
    console.print(
        f"wrote {len(rows)} rows to {path}: latency {values.min():.3f}..{values.max():.3f} ms "
        f"({statistic} of {repeats} runs, {threads} thread(s), {device_name(device)})"
    )


def _check_statistic(statistic: str) -> None:
    if statistic not in ("min", "median"):
        raise HardwareError(f"statistic {statistic!r} is not allowed; allowed: min, median")


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
        model = lm.load_hardware(hardware)
        data = load_measurements(measurements)
        kwargs: dict[str, Any] = {}
        if model.kind == "gpu":
            kwargs["precisions"] = [p or model.options()["precision"][0] for p in data.precisions]
        fit = model.fit(data.specs, data.metrics, **kwargs)
        profile = dict(fit.profile)
        profile["name"] = name or out.stem
        calibration = dict(profile.get("calibration") or {})
        calibration.update(
            measurements=[str(p) for p in measurements],
            rows=len(data.specs),
            processors=sorted({r.get("processor") or r.get("device") or "" for r in data.rows}),
            mape_before={k: round(v, 4) for k, v in fit.before.items()},
            mape_after={k: round(v, 4) for k, v in fit.after.items()},
            date=datetime.date.today().isoformat(),
        )
        profile["calibration"] = calibration
        lm.dump_profile(profile, out)
        lm.load_hardware(str(out))  # the written file must load
    table = Table(title=f"calibrated {model.name} on {len(data.specs)} measurements -> {out}")
    for col in ("figure", "before", "after"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for key in fit.before:
        table.add_row(key, f"{fit.before[key]:.1%}", f"{fit.after[key]:.1%}")
    console.print(table)


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
        None, "--out", "-o", help="Profile to write (default: the shipped profiles folder)."
    ),
    merge: bool = typer.Option(
        True, "--merge/--replace", help="Keep entries of an existing profile at --out."
    ),
) -> None:
    """Time every distinct block of a space into a `measured` profile, then calibrate it on
    separate subnets measured end to end."""
    with user_errors():
        s = supernet.get_space(space)
        _check_statistic(statistic)
        timing = Timing(device, "fp32", threads, warmup, repeats)
        path = out or lm.PROFILE_DIR / f"{name}.yaml"
        profile = _base_profile(path, name, merge)
        model = lm.from_profile(profile, str(path))
        assert isinstance(model, BlockTableModel)
        try:
            cover = s.block_cover(resolutions)
        except NotImplementedError as err:
            raise HardwareError(f"build-lut: {err}") from None
        specs = [s.to_spec(a, batch=batch) for a in cover]
        entries: dict[str, tuple[lm.NetworkSpec, int]] = {}
        for spec in specs:
            for i, sig in enumerate(spec.arrays.blocks):
                entries.setdefault(model.key_of(sig, i == 0), (spec, i))
        start = datetime.datetime.now()
        with progress_bar(f"timing {len(entries)} blocks", rounds * len(entries)) as advance:
            table = measure_block_table(entries, timing, rounds, lambda i, n: advance(1))
        tables = profile.setdefault("tables", {})
        tables[batch] = {**(tables.get(batch) or {}), **table} if merge else table
        profile["measurement"] = {
            "device": device,
            "processor": device_name(device),
            "threads": threads,
            "warmup": warmup,
            "repeats": repeats,
            "rounds": rounds,
            "statistic": statistic,
            "torch": _torch_version(),
            "spaces": sorted({*profile.get("measurement", {}).get("spaces", []), s.name})
            if merge
            else [s.name],
            "date": start.date().isoformat(),
        }
        model = lm.from_profile(profile, str(path))
        if calibrate_n:
            archs = sample_archs(s, calibrate_n, calibration_seed, resolutions=resolutions)
            (results,) = measure_archs(
                s, archs, timing, batch, rounds, f"timing {calibrate_n} calibration subnets"
            )
            measured = np.array([r.stat(statistic) for r in results])
            fit = model.fit([s.to_spec(a, batch=batch) for a in archs], {"latency_ms": measured})
            calibration = dict(fit.profile["calibration"])
            calibration.update(
                space=s.name,
                seed=calibration_seed,
                n=calibrate_n,
                statistic=statistic,
                mape_uncalibrated=round(fit.before["latency_ms_mape"], 4),
                mape_calibrated=round(fit.after["latency_ms_mape"], 4),
                resolutions=list(resolutions or []),
                arch_ids=[s.arch_id(a) for a in archs],
                archs=[s.to_json(a) for a in archs],
            )
            profile["calibration"] = calibration
        profile["measurement"]["seconds"] = round((datetime.datetime.now() - start).total_seconds())
        lm.dump_profile(profile, path)
        lm.load_hardware(str(path))
    cal = profile.get("calibration", {})
    console.print(
        f"wrote {path}: {len(table)} blocks of {s.name} at batch {batch} "
        f"({sum(len(t) for t in profile['tables'].values())} entries in all)"
    )
    if calibrate_n:
        console.print(
            f"calibration on {calibrate_n} subnets: scale {cal['scale']}, overhead "
            f"{cal['overhead_ms']} ms, per block {cal['per_block_ms']} ms, per layer "
            f"{cal['per_layer_ms']} ms; MAPE "
            f"{cal['mape_uncalibrated']:.1%} uncalibrated -> {cal['mape_calibrated']:.1%}"
        )


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _base_profile(path: Path, name: str, merge: bool) -> dict[str, Any]:
    if merge and path.is_file():
        existing = read_yaml(path)
        lm.from_profile(existing, str(path))  # must be valid before we extend it
        if existing.get("kind") != "measured":
            raise HardwareError(f"{path} is a {existing.get('kind')} profile, not measured")
        return dict(existing)
    return {
        "name": name,
        "kind": "measured",
        "description": "this machine's CPU: block latencies timed with torch, calibrated end "
        "to end (nas latency build-lut)",
        "key_format": "generic",
        "tables": {},
    }


@dataclass
class Validation:
    hardware: str
    predicted: np.ndarray
    measured: np.ndarray

    def figures(self) -> dict[str, float]:
        from scipy.stats import kendalltau

        error = self.predicted / self.measured - 1
        return {
            "n": len(error),
            "within_5pct": float(np.mean(np.abs(error) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(error) <= 0.10)),
            "mape": float(np.mean(np.abs(error))),
            "max_error": float(np.max(np.abs(error))),
            "bias": float(np.mean(error)),
            "kendall_tau": float(kendalltau(self.predicted, self.measured).statistic),
        }


@app.command("validate")
def validate(
    hardware: list[str] = HARDWARE_OPTION,
    space: str = SPACE_OPTION,
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
    """Measure N random subnets end to end (none used for calibration or training) and
    compare each profile's predictions: within ±5% / ±10%, MAPE, Kendall tau."""
    with user_errors():
        s = supernet.get_space(space)
        models = [lm.load_hardware(h) for h in hardware]
        floor: list[Validation] = []
        rescaled: list[Validation] = []
        if measurements is not None:
            data = load_measurements([measurements])
            specs, measured = data.specs, data.metrics.get("latency_ms")
            if measured is None:
                raise MeasurementError(f"{measurements}: no latency_ms column")
        else:
            settings = _timing_settings(models, threads, repeats, rounds, statistic)
            timing = Timing(
                "cpu", "fp32", settings["threads"], settings["warmup"], settings["repeats"]
            )
            archs = sample_archs(s, n, seed, _excluded(models), resolutions)
            calibration = _calibration_archs(models, s) if recalibrate else []
            copies = measure_archs(
                s,
                [*archs, *calibration],
                timing,
                batch,
                settings["rounds"],
                f"timing {n + len(calibration)} subnets",
                instances=2 if noise_floor else 1,
            )
            stat = settings["statistic"]
            results = copies[0][:n]
            measured = np.array([r.stat(stat) for r in results])
            if noise_floor:
                again = np.array([r.stat(stat) for r in copies[1][:n]])
                floor.append(Validation("second measurement (noise floor)", again, measured))
            specs = [s.to_spec(a, batch=batch) for a in archs]
            if calibration:
                cal_specs = [s.to_spec(a, batch=batch) for a in calibration]
                cal_measured = np.array([r.stat(stat) for r in copies[0][n:]])
                for m in models:
                    # one factor per profile, fitted on the calibration subnets only
                    ratio = cal_measured / m.predict_arrays(cal_specs)["latency_ms"]
                    factor = float(np.exp(np.mean(np.log(ratio))))
                    rescaled.append(
                        Validation(
                            f"{m.name} x {factor:.3f} (same-session scale)",
                            factor * m.predict_arrays(specs)["latency_ms"],
                            measured,
                        )
                    )
            if save is not None:
                rows = measurement_rows(s, archs, results, timing, batch, settings["statistic"])
                write_csv(save, rows, CSV_FIELDS)
        validations = [
            Validation(m.name, m.predict_arrays(specs)["latency_ms"], measured) for m in models
        ]
    figures = [(v, v.figures()) for v in [*validations, *rescaled, *floor]]
    if as_json:
        for v, f in figures:
            typer.echo(json.dumps({"hardware": v.hardware, "space": s.name, **f}))
    else:
        table = Table(title=f"{s.name}: {len(measured)} subnets measured end to end vs predicted")
        for col in ("hardware", "within ±5%", "within ±10%", "MAPE", "max error", "bias", "tau"):
            table.add_column(col, justify="left" if col == "hardware" else "right")
        for v, f in figures:
            table.add_row(
                v.hardware,
                f"{f['within_5pct']:.0%}",
                f"{f['within_10pct']:.0%}",
                f"{f['mape']:.1%}",
                f"{f['max_error']:.1%}",
                f"{f['bias']:+.1%}",
                f"{f['kendall_tau']:.3f}",
            )
        console.print(table)
    if plot is not None:
        _plot([*validations, *rescaled], s.name, plot)
        console.print(f"wrote {plot}")


def _calibration_archs(models: Sequence[lm.CostModel], space: SearchSpace) -> list[Arch]:
    """The calibration subnets of the first measured profile (of this space)."""
    for m in models:
        cal = m.profile.get("calibration") or {}
        if isinstance(m, lm.MeasuredModel) and cal.get("space") == space.name:
            if cal.get("archs"):
                return [space.from_json(text) for text in cal["archs"]]
            # older profiles keep the seed: sampling again gives the same subnets
            archs = sample_archs(space, int(cal["n"]), int(cal["seed"]),
                                 resolutions=cal.get("resolutions") or None)  # fmt: skip
            if [space.arch_id(a) for a in archs] != cal.get("arch_ids"):
                raise HardwareError(f"hardware {m.name!r}: cannot rebuild its calibration subnets")
            return archs
    raise HardwareError(
        f"--recalibrate needs a measured profile calibrated on {space.name!r} among --hardware"
    )


def _excluded(models: Sequence[lm.CostModel]) -> set[str]:
    """Arch ids a profile was calibrated or trained on: never validation subnets."""
    ids: set[str] = set()
    for m in models:
        ids.update(m.profile.get("calibration", {}).get("arch_ids", []) or [])
        ids.update(m.profile.get("trained_on", {}).get("arch_ids", []) or [])
    return ids


def _timing_settings(
    models: Sequence[lm.CostModel],
    threads: int | None,
    repeats: int | None,
    rounds: int | None,
    statistic: str | None,
) -> dict[str, Any]:
    """The timing of the first measured profile (as its calibration subnets were timed),
    unless given."""
    base: dict[str, Any] = {
        "threads": 1,
        "warmup": 10,
        "repeats": 100,
        "rounds": 10,
        "statistic": "median",
    }
    for m in models:
        if isinstance(m, lm.MeasuredModel):
            base.update(threads=m.threads, warmup=m.warmup, repeats=m.repeats, rounds=m.rounds)
            base["statistic"] = m.calibration.get("statistic", base["statistic"])
            break
    given = {"threads": threads, "repeats": repeats, "rounds": rounds, "statistic": statistic}
    for key, value in given.items():
        if value is not None:
            base[key] = value
    _check_statistic(base["statistic"])
    return base


def _plot(validations: Sequence[Validation], space: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    low = min(min(v.measured.min(), v.predicted.min()) for v in validations) * 0.9
    high = max(max(v.measured.max(), v.predicted.max()) for v in validations) * 1.1
    line = np.array([low, high])
    ax.plot(line, line, color="black", linewidth=1, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.2, label="±10%")
    for v, marker in zip(validations, "os^Dv", strict=False):
        f = v.figures()
        label = f"{v.hardware}: {f['within_10pct']:.0%} within ±10%, tau {f['kendall_tau']:.2f}"
        ax.scatter(v.measured, v.predicted, s=18, marker=marker, label=label)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{space}: {len(validations[0].measured)} subnets")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
        data = load_measurements(measurements)
        if "latency_ms" not in data.metrics:
            raise MeasurementError("training needs a latency_ms column")
        processors = sorted({r.get("processor") or "" for r in data.rows} - {""})
        profile = train(
            data.specs,
            data.metrics["latency_ms"],
            name=name or out.stem,
            trees=trees,
            max_depth=depth,
            learning_rate=learning_rate,
            seed=seed,
            description=f"gradient-boosted trees trained on {len(data.specs)} measured subnets"
            + (f" ({', '.join(processors)})" if processors else ""),
            trained_on={
                "measurements": [str(p) for p in measurements],
                "spaces": sorted({r.get("space") or r.get("network") or "" for r in data.rows}),
                "statistic": sorted({r.get("statistic") or "" for r in data.rows} - {""}),
                "arch_ids": data.arch_ids(),
            },
        )
        lm.dump_profile(profile, out)
        lm.load_hardware(str(out))
    console.print(
        f"wrote {out}: {trees} trees of depth {depth} on {len(data.specs)} rows, "
        f"training MAPE {profile['trained_on']['train_mape']:.1%}"
    )
