"""The measurement CSV: its columns, the rows a timing run writes, and the rows of measurement
CSVs read back as networks and measured metrics.

A row names its network with `space` + `arch` (+ `batch`), or `network` (a reference network of
latency_models.zoo, or an ONNX or TorchScript file). A bad row raises MeasurementError naming the
file, the line and the column.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import latency_models as lm
import supernet
from latency_models.errors import HardwareError, MeasurementError, UnknownNetworkError
from latency_models.torch.measure import Timing, TimingResult, device_name
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


# Columns of a measurement row that are options of the device model that costs it (a GPU's
# precision, runtime, software stack and layout); an empty cell means the profile's default.
OPTION_COLUMNS = ("precision", "runtime", "stack", "layout")


def check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise HardwareError(f"statistic {statistic!r} is not allowed; allowed: min, median")


# ----- writing rows -----------------------------------------------------------------------------


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


# ----- reading rows -----------------------------------------------------------------------------


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
        """Per row, the options of `model` the row names (precision, runtime, stack)."""
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
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            try:
                _read_rows(path, reader, spaces, specs, rows, precisions, values)
            except UnicodeDecodeError:
                raise MeasurementError(f"{path} is not a UTF-8 CSV file") from None
            except csv.Error as err:
                raise MeasurementError(f"{path} line {reader.line_num}: {err}") from None
    if not specs:
        raise MeasurementError(f"no rows in {', '.join(map(str, paths))}")
    metrics = {m: np.array(v) for m, v in values.items() if not np.isnan(v).any()}
    if not metrics:
        raise MeasurementError("no measured column is filled in every row")
    log.info("read %d measured rows from %d file(s)", len(specs), len(paths))
    return Measurements(specs, rows, metrics, precisions)


def require_rows(data: Measurements, paths: Sequence[Path], min_rows: int = 2) -> None:
    """A fit or a validation needs `min_rows` measured rows, of all `paths` together; a
    caller checks this after the checks of the rows' contents."""
    n = len(data.specs)
    if n < min_rows:
        raise MeasurementError(
            f"{', '.join(map(str, paths))}: {n} measured row{'s' if n != 1 else ''}; "
            f"at least {min_rows} are needed"
        )


def _read_rows(
    path: Path,
    reader: csv.DictReader,
    spaces: dict[str, SearchSpace],
    specs: list[lm.NetworkSpec],
    rows: list[dict[str, str]],
    precisions: list[str],
    values: dict[str, list[float]],
) -> None:
    """Check the columns of one file and append its rows to the lists given."""
    columns = set(reader.fieldnames or ())
    present = [m for m in METRICS if m in columns]
    if not present:
        raise MeasurementError(f"{path}: no measured column; expected one of: {', '.join(METRICS)}")
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
    if not math.isfinite(value):
        raise MeasurementError(f"{path} line {line}: column {metric}: must be finite, got {text!r}")
    return value
