"""Profile a device: time subnets on this machine, and build, calibrate, fit and validate the
hardware profiles of latency_models from those timings.

    rows = measure("mnist-mbv3", n=20).rows             # end-to-end timings, written as a CSV
    calibrate("a100-sxm", [Path("m.csv")], Path("new.yaml"))
    build_lut("mnist-mbv3")                              # runs/profiles/local-cpu.yaml: this CPU
    report = validate(["local-cpu"], "mnist-mbv3", n=50) # predicted vs measured
    fit_learned([Path("m.csv")], Path("gbdt.yaml"))      # a `learned` profile

Every timing runs on end-to-end networks extracted from the space's supernet
(`supernet.build(space).extract(arch)`), with fixed threads, warm-up runs, and repeats spread
over interleaved rounds, so that a passing disturbance does not hit one network only. Bad input
raises errors deriving from `latency_models.UserError` (HardwareError, MeasurementError, ...).
"""

from __future__ import annotations

import csv
import datetime
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import latency_models as lm
import supernet
from latency_models.errors import HardwareError, MeasurementError, UnknownNetworkError
from latency_models.hardware import read_yaml, user_profile_dir
from latency_models.models.learned import train
from latency_models.models.lut import BlockTableModel
from latency_models.torch.measure import (
    Timing,
    TimingResult,
    device_name,
    measure_block_table,
    time_module,
)
from supernet import Arch, SearchSpace
from supernet.errors import InvalidArchError

log = logging.getLogger(__name__)

METRICS = ("latency_ms", "peak_sram_kb", "flash_kb")  # the columns a measurement CSV may fill
STATISTICS = ("min", "median")  # what latency_ms of a timed subnet may be
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
HardwareLike = str | lm.CostModel


# ----- timing end to end ------------------------------------------------------------------------


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """A transient rich progress bar on stderr; yields advance(n=1)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not enabled) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise HardwareError(f"statistic {statistic!r} is not allowed; allowed: min, median")


def sample_archs(
    space: SearchSpace,
    n: int,
    seed: int,
    exclude: set[str] | frozenset[str] = frozenset(),
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


def time_archs(
    space: SearchSpace,
    archs: Sequence[Arch],
    timing: Timing,
    batch: int,
    rounds: int,
    description: str = "timing subnets",
    instances: int = 1,
    progress: bool = True,
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
    times: list[list[list[float]]] = [[[] for _ in archs] for _ in copies]
    total = rounds * len(archs) * instances
    with progress_bar(description, total, progress) as advance:
        for _ in range(rounds):
            for i, shape in enumerate(shapes):
                for c, nets in enumerate(copies):
                    times[c][i].extend(time_module(nets[i], shape, per_round).times_ms)
                    advance(1)
    log.info("timed %d subnets of %s (%d round(s))", len(archs), space.name, rounds)
    return [[TimingResult.of(t) for t in per_copy] for per_copy in times]


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def measurement_rows(
    space: SearchSpace,
    archs: Sequence[Arch],
    results: Sequence[TimingResult],
    timing: Timing,
    batch: int,
    statistic: str,
) -> list[dict[str, Any]]:
    """One CSV row (CSV_FIELDS) per timed arch."""
    processor = device_name(timing.device)
    version = _torch_version()
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
                "torch": version,
            }
        )
    return rows


def write_csv(
    path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] = CSV_FIELDS
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# ----- measurement CSVs -------------------------------------------------------------------------


# Columns of a measurement row that are options of the device model that costs it (a GPU's
# precision, runtime and layout); an empty cell means the profile's default.
OPTION_COLUMNS = ("precision", "runtime", "layout")


@dataclass
class Measurements:
    """Rows of measurement CSVs: the network of each row and its measured metrics."""

    specs: list[lm.NetworkSpec]
    rows: list[dict[str, str]]
    metrics: dict[str, np.ndarray]  # only the metrics filled in every row
    precisions: list[str]

    def arch_ids(self) -> list[str]:
        return [r["arch_id"] for r in self.rows if r.get("arch_id")]

    def macs(self) -> np.ndarray:
        """MACs x batch of each row's network."""
        return np.array([spec.macs * spec.batch for spec in self.specs], dtype=float)

    def options(self, model: lm.CostModel) -> list[dict[str, str]]:
        """Per row, the options of `model` the row names (precision, runtime)."""
        known = model.options()
        return [
            {k: row[k] for k in OPTION_COLUMNS if k in known and row.get(k)} for row in self.rows
        ]

    def predict(self, model: lm.CostModel, metric: str = "latency_ms") -> np.ndarray:
        """`model`'s prediction of `metric` for every row, each with its own options."""
        out = np.empty(len(self.specs))
        groups: dict[tuple, list[int]] = {}
        for i, opts in enumerate(self.options(model)):
            groups.setdefault(tuple(sorted(opts.items())), []).append(i)
        for key, idx in groups.items():
            values = model.predict_arrays([self.specs[i] for i in idx], **dict(key))[metric]
            out[idx] = values
        return out

    def subset(self, keep: Sequence[int]) -> Measurements:
        keep = list(keep)
        return Measurements(
            [self.specs[i] for i in keep],
            [self.rows[i] for i in keep],
            {m: v[keep] for m, v in self.metrics.items()},
            [self.precisions[i] for i in keep],
        )


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
    log.info("read %d measured rows from %d file(s)", len(specs), len(paths))
    return Measurements(specs, rows, metrics, precisions)


def _row_spec(
    path: Path, line: int, row: dict[str, str], spaces: dict[str, SearchSpace]
) -> lm.NetworkSpec:
    try:
        batch = int(row.get("batch") or 1)
    except ValueError:
        raise MeasurementError(f"{path} line {line}: column batch: {row['batch']!r}") from None
    network = (row.get("network") or "").strip()
    if network and not network.startswith("{"):
        return _network_spec(path, line, network, row.get("resolution") or "", batch)
    if network:  # an arch as JSON, of the row's space
        row = {**row, "arch": network}
    name = row.get("space") or ""
    if name not in spaces:
        spaces[name] = supernet.get_space(name)
    space = spaces[name]
    try:
        return space.to_spec(space.from_json(row.get("arch") or ""), batch=batch)
    except InvalidArchError as err:
        raise MeasurementError(f"{path} line {line}: column arch: {err}") from None


def _network_spec(
    path: Path, line: int, network: str, resolution_text: str, batch: int
) -> lm.NetworkSpec:
    """A row's `network`: a reference network by name (`resolution` optional), or the path
    of an ONNX or TorchScript file to read (relative to the CSV; a TorchScript file records
    no input shape: `resolution` gives it, 3 channels)."""
    where = f"{path} line {line}"
    try:
        resolution = int(resolution_text) if resolution_text else None
    except ValueError:
        raise MeasurementError(f"{where}: column resolution: {resolution_text!r}") from None
    if network.lower().endswith(lm.NETWORK_FILE_SUFFIXES):
        file = Path(network) if Path(network).is_absolute() else path.parent / network
        shape = (3, resolution, resolution) if resolution else None
        try:
            return lm.spec_from_file(file, input_shape=shape, batch=batch)
        except lm.UserError as err:
            raise MeasurementError(f"{where}: column network: {err}") from None
    try:
        return lm.reference_spec(network, resolution=resolution, batch=batch)
    except UnknownNetworkError as err:
        raise MeasurementError(f"{where}: column network: {err}") from None


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


def _space(space: SearchSpace | str) -> SearchSpace:
    return supernet.get_space(space) if isinstance(space, str) else space


# ----- measure ----------------------------------------------------------------------------------


@dataclass
class MeasureResult:
    path: Path
    rows: list[dict[str, Any]]
    processor: str  # the processor that ran the timings

    @property
    def latencies(self) -> np.ndarray:
        return np.array([r["latency_ms"] for r in self.rows])


def measure(
    space: SearchSpace | str,
    device: str = "cpu",
    n: int = 20,
    batch: int = 1,
    precision: str = "fp32",
    seed: int = 0,
    resolutions: Sequence[int] | None = None,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    rounds: int = 10,
    statistic: str = "median",
    out: Path | None = None,
    progress: bool = True,
) -> MeasureResult:
    """Time `n` random subnets end to end and write a CSV (one row per subnet); the default
    path is runs/latency/SPACE-DEVICE-bBATCH-PRECISION.csv."""
    s = _space(space)
    timing = Timing(device, precision, threads, warmup, repeats)
    check_statistic(statistic)
    archs = sample_archs(s, n, seed, resolutions=resolutions)
    (results,) = time_archs(s, archs, timing, batch, rounds, f"timing {n} subnets", 1, progress)
    rows = measurement_rows(s, archs, results, timing, batch, statistic)
    path = out or Path("runs/latency") / f"{s.name}-{device}-b{batch}-{precision}.csv"
    write_csv(path, rows, CSV_FIELDS)
    log.info("wrote %d measured subnets to %s", len(rows), path)
    return MeasureResult(path, rows, device_name(device))


# ----- calibrate --------------------------------------------------------------------------------


@dataclass
class CalibrationResult:
    model: lm.CostModel  # the profile before calibration
    fit: lm.Fit
    rows: int  # measurements fitted on
    path: Path


def calibrate(
    hardware: HardwareLike,
    measurements: Sequence[Path],
    out: Path,
    name: str | None = None,
) -> CalibrationResult:
    """Fit a profile's free parameters to measurement CSVs and write the new profile to `out`
    (named `name`, default the file stem)."""
    model = lm.load_hardware(hardware)
    data = load_measurements(measurements)
    fit = model.fit(data.specs, data.metrics, **_fit_options(model, data))
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
    log.info("calibrated %s on %d measurements: wrote %s", model.name, len(data.specs), out)
    return CalibrationResult(model, fit, len(data.specs), out)


def _fit_options(model: lm.CostModel, data: Measurements) -> dict[str, Any]:
    """The per-row options a model's `fit` takes (a GPU: precisions and runtimes)."""
    if model.kind != "gpu":
        return {}
    defaults = {k: v[0] for k, v in model.options().items()}
    rows = data.options(model)
    return {
        "precisions": [o.get("precision", defaults["precision"]) for o in rows],
        "runtimes": [o.get("runtime", defaults["runtime"]) for o in rows],
        "layouts": [o.get("layout", defaults["layout"]) for o in rows],
    }


# ----- adapt a profile to a device from a few measurements ---------------------------------------

# Few-shot adaptation fits these parameters of a GPU profile, pulled 10x harder towards the
# base profile than a calibration is: 10-20 measured networks cannot pin down every layer
# class's efficiency, but they do fix the device's overall speed and its overheads.
ADAPT_PRIOR_WEIGHT = 1.0
ADAPT_GPU_PARAMETERS = (
    "efficiency.conv",
    "efficiency.pointwise",
    "efficiency.depthwise",
    # the device's bandwidth, not the base's memory efficiency: that is at most 1, and a newer
    # GPU's memory can be faster than the base's whole datasheet bandwidth (an RTX 5090's
    # 1,792 GB/s against an RTX 4090's 1,008)
    "bandwidth_scale",
    "{runtime}.kernel_launch_us",
    "{runtime}.op_overhead_us",
    "{runtime}.network_overhead_us",
)


@dataclass
class AdaptResult:
    model: lm.CostModel  # the base profile
    fit: lm.Fit
    rows: int
    path: Path
    before: dict[str, float]  # figures of the base profile on the measurements
    after: dict[str, float]  # of the adapted profile, on the same rows (in-sample)


def adapt(
    hardware: HardwareLike,
    measurements: Sequence[Path],
    out: Path,
    name: str | None = None,
    prior_weight: float = ADAPT_PRIOR_WEIGHT,
) -> AdaptResult:
    """Fit a profile for a device the user owns from a few (10-20) measured networks, starting
    from the profile of a similar device (`hardware`): only its overall speed and overheads
    move, the rest keeps the base profile's values. Writes the new profile to `out`."""
    model = lm.load_hardware(hardware)
    data = load_measurements(measurements)
    if "latency_ms" not in data.metrics:
        raise MeasurementError("adapting a profile needs a latency_ms column filled in every row")
    kwargs = _fit_options(model, data)
    if model.kind == "gpu":
        runtimes = sorted(set(kwargs["runtimes"]))
        kwargs["free"] = [p.format(runtime=rt) for p in ADAPT_GPU_PARAMETERS for rt in runtimes]
        kwargs["prior_weight"] = prior_weight
    fit = model.fit(data.specs, data.metrics, **kwargs)
    profile = dict(fit.profile)
    profile["name"] = name or out.stem
    profile["description"] = f"adapted from {model.name} on {len(data.specs)} measurements"
    profile["calibration"] = {
        "adapted_from": model.name,
        "measurements": [str(p) for p in measurements],
        "rows": len(data.specs),
        "mape_before": round(fit.before["latency_ms_mape"], 4),
        "mape_after": round(fit.after["latency_ms_mape"], 4),
        "date": datetime.date.today().isoformat(),
    }
    lm.dump_profile(profile, out)
    adapted = lm.load_hardware(str(out))  # the written file must load
    measured = data.metrics["latency_ms"]
    before = Validation(model.name, data.predict(model), measured, data.macs()).figures()
    after = Validation(adapted.name, data.predict(adapted), measured, data.macs()).figures()
    log.info("adapted %s on %d measurements: wrote %s", model.name, len(data.specs), out)
    return AdaptResult(model, fit, len(data.specs), out, before, after)


# ----- build a measured profile -----------------------------------------------------------------


@dataclass
class LutResult:
    path: Path
    profile: dict[str, Any]  # as written
    blocks: int  # blocks timed in this run
    space: str
    batch: int

    @property
    def entries(self) -> int:
        """Entries of the profile, all batches."""
        return sum(len(t) for t in self.profile["tables"].values())

    @property
    def calibration(self) -> dict[str, Any]:
        return dict(self.profile.get("calibration", {}))


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_profile_name(name: str) -> None:
    """HardwareError unless `name` is a plain file name: no path separator, no `..`."""
    if not _PROFILE_NAME.match(name) or ".." in name or name.lower().endswith((".yaml", ".yml")):
        raise HardwareError(
            f"profile name {name!r} is not allowed: use letters, digits, '-', '_' and '.' "
            "(no path separators or '..', no .yaml suffix); pass --out to choose the file"
        )


def build_lut(
    space: SearchSpace | str,
    device: str = "cpu",
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    resolutions: Sequence[int] | None = None,
    calibrate_n: int = 30,
    calibration_seed: int = 1,
    rounds: int = 10,
    statistic: str = "median",
    name: str = "local-cpu",
    out: Path | None = None,
    merge: bool = True,
    progress: bool = True,
) -> LutResult:
    """Time every distinct block of a space into a `measured` profile (default: NAME.yaml in
    the user's profile folder, `$NAS_PROFILE_DIR` or runs/profiles, where `load_hardware(NAME)`
    finds it before the shipped profiles; never the installed package), then calibrate it on
    `calibrate_n` separate subnets measured end to end. With `merge`, entries of an existing
    profile at `out` are kept."""
    check_profile_name(name)  # before anything is timed or written
    s = _space(space)
    check_statistic(statistic)
    timing = Timing(device, "fp32", threads, warmup, repeats)
    path = out or user_profile_dir() / f"{name}.yaml"
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
    description = f"timing {len(entries)} blocks"
    with progress_bar(description, rounds * len(entries), progress) as advance:
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
        profile["calibration"] = _calibrate_table(
            model, s, timing, batch, rounds, statistic, calibrate_n, calibration_seed,
            resolutions, progress,
        )  # fmt: skip
    profile["measurement"]["seconds"] = round((datetime.datetime.now() - start).total_seconds())
    lm.dump_profile(profile, path)
    lm.load_hardware(str(path))
    log.info("wrote %s: %d blocks of %s at batch %d", path, len(table), s.name, batch)
    return LutResult(path, profile, len(table), s.name, batch)


def _calibrate_table(
    model: lm.CostModel,
    space: SearchSpace,
    timing: Timing,
    batch: int,
    rounds: int,
    statistic: str,
    n: int,
    seed: int,
    resolutions: Sequence[int] | None,
    progress: bool,
) -> dict[str, Any]:
    """The calibration of a block table, fitted on `n` subnets timed end to end."""
    archs = sample_archs(space, n, seed, resolutions=resolutions)
    description = f"timing {n} calibration subnets"
    (results,) = time_archs(space, archs, timing, batch, rounds, description, 1, progress)
    measured = np.array([r.stat(statistic) for r in results])
    fit = model.fit([space.to_spec(a, batch=batch) for a in archs], {"latency_ms": measured})
    calibration = dict(fit.profile["calibration"])
    calibration.update(
        space=space.name,
        seed=seed,
        n=n,
        statistic=statistic,
        mape_uncalibrated=round(fit.before["latency_ms_mape"], 4),
        mape_calibrated=round(fit.after["latency_ms_mape"], 4),
        resolutions=list(resolutions or []),
        arch_ids=[space.arch_id(a) for a in archs],
        archs=[space.to_json(a) for a in archs],
    )
    return calibration


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


# ----- validate ---------------------------------------------------------------------------------


@dataclass
class Validation:
    """One profile's predictions of measured subnets (or a second measurement of them)."""

    hardware: str
    predicted: np.ndarray
    measured: np.ndarray
    # MACs x batch of each network: ranking by them is the baseline a cost model must beat
    macs: np.ndarray | None = None

    def figures(self) -> dict[str, float]:
        from scipy.stats import kendalltau

        error = self.predicted / self.measured - 1
        figures = {
            "n": len(error),
            "within_5pct": float(np.mean(np.abs(error) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(error) <= 0.10)),
            "mape": float(np.mean(np.abs(error))),
            "max_error": float(np.max(np.abs(error))),
            "bias": float(np.mean(error)),
            "kendall_tau": float(kendalltau(self.predicted, self.measured).statistic),
        }
        if self.macs is not None:
            figures["macs_kendall_tau"] = float(kendalltau(self.macs, self.measured).statistic)
        return figures


@dataclass
class ValidationReport:
    space: str
    subnets: int  # subnets measured
    validations: list[Validation]  # one per profile
    rescaled: list[Validation] = field(default_factory=list)  # with a same-session scale
    floor: list[Validation] = field(default_factory=list)  # second measurement (noise floor)

    @property
    def rows(self) -> list[Validation]:
        """Every validation, in the order they are reported."""
        return [*self.validations, *self.rescaled, *self.floor]


def validate(
    hardware: Sequence[HardwareLike],
    space: SearchSpace | str | None,
    n: int = 50,
    seed: int = 2,
    resolutions: Sequence[int] | None = None,
    batch: int = 1,
    threads: int | None = None,
    repeats: int | None = None,
    rounds: int | None = None,
    statistic: str | None = None,
    noise_floor: bool = False,
    recalibrate: bool = False,
    measurements: Path | None = None,
    save: Path | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Measure `n` random subnets end to end (none used for calibration or training), or read
    them from `measurements`, and compare each profile's predictions with them.

    Timing settings not given are the first measured profile's. `noise_floor` also times a
    second copy of each subnet; `recalibrate` also times the first measured profile's
    calibration subnets and reports every profile once more with one scale fitted on them.
    `save` writes the measurements as a CSV."""
    models = [lm.load_hardware(h) for h in hardware]
    floor: list[Validation] = []
    rescaled: list[Validation] = []
    if measurements is not None:  # networks measured elsewhere, each with its own options
        data = load_measurements([measurements])
        if "latency_ms" not in data.metrics:
            raise MeasurementError(f"{measurements}: no latency_ms column")
        measured, macs = data.metrics["latency_ms"], data.macs()
        validations = [Validation(m.name, data.predict(m), measured, macs) for m in models]
        label = space.name if isinstance(space, SearchSpace) else space or ""
        return ValidationReport(label, len(measured), validations)
    s = _space(space)
    settings = _timing_settings(models, threads, repeats, rounds, statistic)
    timing = Timing("cpu", "fp32", settings["threads"], settings["warmup"], settings["repeats"])
    archs = sample_archs(s, n, seed, _excluded(models), resolutions)
    calibration = _calibration_archs(models, s) if recalibrate else []
    copies = time_archs(
        s,
        [*archs, *calibration],
        timing,
        batch,
        settings["rounds"],
        f"timing {n + len(calibration)} subnets",
        instances=2 if noise_floor else 1,
        progress=progress,
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
        rows = measurement_rows(s, archs, results, timing, batch, stat)
        write_csv(save, rows, CSV_FIELDS)
        log.info("wrote %d measured subnets to %s", len(rows), save)
    macs = np.array([spec.macs * spec.batch for spec in specs], dtype=float)
    validations = [
        Validation(m.name, m.predict_arrays(specs)["latency_ms"], measured, macs) for m in models
    ]
    return ValidationReport(s.name, len(measured), validations, rescaled, floor)


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
    check_statistic(base["statistic"])
    return base


def plot_validations(validations: Sequence[Validation], space: str, path: Path) -> None:
    """Predicted against measured latency, one marker per profile, as a PNG."""
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
    log.info("wrote %s", path)


# ----- fit a learned model ----------------------------------------------------------------------


@dataclass
class LearnedResult:
    path: Path
    profile: dict[str, Any]
    rows: int  # measurements trained on

    @property
    def train_mape(self) -> float:
        return float(self.profile["trained_on"]["train_mape"])


def fit_learned(
    measurements: Sequence[Path],
    out: Path,
    name: str | None = None,
    trees: int = 300,
    depth: int = 3,
    learning_rate: float = 0.05,
    seed: int = 0,
) -> LearnedResult:
    """Train the learned predictor (gradient-boosted trees) on measurement CSVs and write its
    profile to `out` (named `name`, default the file stem)."""
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
    log.info("trained %d trees on %d rows: wrote %s", trees, len(data.specs), out)
    return LearnedResult(out, profile, len(data.specs))
