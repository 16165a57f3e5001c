"""Pareto queries over a stored search.

`pareto_front(store, search_id, target=..., where=[...])` reads the objectives and filtered
metrics of the feasible candidates as columns (served by a covering index), keeps the
non-dominated ones under the search's objectives (or only those of one device), one per
distinct arch, and loads whole rows for those alone. A `--where` filter may set a limit
tighter than the search used: `peak_sram_kb<=256`. `FrontCache` keeps recent fronts for a
server while the search's rows are unchanged.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import operator
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, defer

from nas.config import (
    ACCURACY,
    NETWORK_METRICS,
    Objective,
    SearchConfig,
    join_metric,
    split_metric,
)
from nas.errors import QueryError
from nas.store import MEASURED_SUFFIX, Candidate, Metric, Store, fetch_rows
from supernet.family import quality_metric_names
from supernet.io import short_repr

# metrics of the network itself (stored without a device): quality, macs, params
NETWORK_LEVEL = quality_metric_names() | set(NETWORK_METRICS)
OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass
class CandidateRow:
    trial: int
    generation: int
    arch_id: str
    arch: dict[str, Any]
    feasible: bool
    violation: float
    metrics: dict[str, float]  # quality ("top1", or "fid" and "consistency"), "device.metric"
    # quality measured with the supernet: every quality metric of a search that measured
    # (evaluation: supernet), the verified front of a predictor+verify search
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def top1_measured(self) -> float | None:
        return self.measured.get(ACCURACY)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.trial,
            "generation": self.generation,
            "arch_id": self.arch_id,
            "feasible": self.feasible,
            "top1_measured": self.top1_measured,
            **self.metrics,
            "arch": self.arch,
        }


@dataclass
class Condition:
    metric: str  # device.metric or top1
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass
class Front:
    search_id: int
    objectives: list[Objective]
    front: list[CandidateRow]
    conditions: list[Condition] = field(default_factory=list)
    config: SearchConfig | None = None  # the search's config, for tables
    # to_json / to_csv text, made once: a server hands one kept front out many times
    rendered: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


def non_dominated(points: np.ndarray) -> list[int]:
    """Indices of the rows no other row dominates (every column is minimised; equal rows
    are all kept). Exact, and fast on the fronts of large searches (62,000 distinct archs
    of 3 objectives: 0.2 s, where comparing each row with the front kept so far took 5 s).

    Distinct rows in lexicographic order: only an earlier row can dominate a later one,
    and only a front row need be compared with (a dominated row's dominator dominates
    whatever it does). With 2 columns a row is dominated when an earlier row's second
    value is no larger; with 3, when the staircase of the front's (2nd, 3rd) values kept so
    far has a step below and left of it; with more, rows go in blocks against the front."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return []
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    columns = points.shape[1]
    if columns == 1:
        keep = np.arange(len(distinct)) == 0
    elif columns == 2:
        earlier_best = np.minimum.accumulate(np.concatenate([[np.inf], distinct[:-1, 1]]))
        keep = distinct[:, 1] < earlier_best
    elif columns == 3:
        keep = _staircase_sweep(distinct[:, 1:].tolist())
    else:
        keep = _block_sweep(distinct)
    return np.flatnonzero(keep[inverse.ravel()]).tolist()


def _staircase_sweep(rows: list[list[float]]) -> np.ndarray:
    """Front flags of distinct 3-column rows in lexicographic order, given their last two
    columns: the (y, z) of the front so far form a staircase (y rising, z falling), and a
    row is dominated when the last step with y' <= y has z' <= z."""
    ys: list[float] = []
    zs: list[float] = []
    keep = np.zeros(len(rows), dtype=bool)
    for i, (y, z) in enumerate(rows):
        at = bisect.bisect_right(ys, y)
        if at and zs[at - 1] <= z:
            continue
        keep[i] = True
        end = at
        while end < len(ys) and zs[end] >= z:  # steps this row now dominates
            end += 1
        ys[at:end], zs[at:end] = [y], [z]
    return keep


def _block_sweep(rows: np.ndarray) -> np.ndarray:
    """Front flags of distinct rows in lexicographic order, a block at a time: each block
    against the front kept so far, then against itself."""
    keep = np.zeros(len(rows), dtype=bool)
    front = rows[:0]
    for start in range(0, len(rows), _BLOCK_ROWS):
        block = np.arange(start, min(start + _BLOCK_ROWS, len(rows)))
        block = block[~_dominated_by(rows[block], front)]
        block = block[~_dominated_by(rows[block], rows[block])]
        keep[block] = True
        front = np.concatenate([front, rows[block]])
    return keep


_BLOCK_ROWS = 256


def _dominated_by(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of `rows`, whether some row of `others` dominates it (<= in every column
    and < in one)."""
    if len(others) == 0 or len(rows) == 0:
        return np.zeros(len(rows), dtype=bool)
    no_worse = np.all(others[None, :, :] <= rows[:, None, :], axis=2)
    better = np.any(others[None, :, :] < rows[:, None, :], axis=2)
    return np.any(no_worse & better, axis=1)


def load_config(store: Store, search_id: int) -> SearchConfig:
    with store.session() as s:
        return SearchConfig(**store.search(s, search_id).config)


def parse_conditions(
    texts: Sequence[str], config: SearchConfig, target: str | None
) -> list[Condition]:
    """'peak_sram_kb<=256' (device taken from --target, or the only device that has it)."""
    conditions = []
    for text in texts:
        match = _CONDITION.match(text)
        if not match:
            raise QueryError(
                f"cannot read filter {text!r}; write METRIC<=VALUE (or <, >=, >), e.g. "
                "'peak_sram_kb<=256' or 'stm32f746.latency_ms<500'"
            )
        name, op, text_value = match.groups()
        try:
            value = float(text_value)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise QueryError(
                f"filter {text!r}: {text_value!r} is not a number; write METRIC<=VALUE, e.g. "
                "'peak_sram_kb<=256'"
            )
        conditions.append(Condition(_resolve_metric(name, config, target), op, value))
    return conditions


def _device_metrics(config: SearchConfig) -> dict[str, tuple[str, ...]]:
    import latency_models as lm

    return {device: lm.load_hardware(device).metrics for device in config.targets}


def _resolve_metric(name: str, config: SearchConfig, target: str | None) -> str:
    if name in NETWORK_LEVEL:
        return name
    devices = _device_metrics(config)
    device, _, metric = name.rpartition(".")  # a device may be a profile path with dots
    if device in devices:
        if metric in devices[device]:
            return name
        raise QueryError(
            f"device {device} has no metric {metric!r}; it has {list(devices[device])}"
        )
    if target is not None:
        if name in devices.get(target, ()):
            return f"{target}.{name}"
        raise QueryError(f"device {target} has no metric {name!r}; it has {list(devices[target])}")
    owners = [d for d, metrics in devices.items() if name in metrics]
    if len(owners) == 1:
        return f"{owners[0]}.{name}"
    if not owners:
        known = sorted({m for metrics in devices.values() for m in metrics} | {ACCURACY})
        known = [m for m in known if m not in NETWORK_METRICS] + list(NETWORK_METRICS)
        raise QueryError(f"no device of this search reports {name!r}; metrics: {known}")
    raise QueryError(f"{name!r} is reported by {owners}; write DEVICE.{name} or pass --target")


def _row_filter(search_id: int, feasible_only: bool, conditions: Sequence[Condition]) -> Any:
    """The candidates of a search (feasible ones, those meeting `conditions`) as a WHERE."""
    clauses = [Candidate.search_id == search_id]
    if feasible_only:
        clauses.append(Candidate.feasible.is_(True))
    for cond in conditions:
        device, name = split_metric(cond.metric)
        matching = select(Metric.candidate_id).where(
            Metric.search_id == search_id,
            Metric.device == device,
            Metric.name == name,
            OPERATORS[cond.op](Metric.value, cond.value),
        )
        clauses.append(Candidate.id.in_(matching))
    return and_(*clauses)


def count_candidates(
    store: Store, search_id: int, feasible_only: bool = False, conditions: Sequence[Condition] = ()
) -> int:
    with store.session() as s:
        query = select(func.count()).select_from(Candidate)
        return s.scalar(query.where(_row_filter(search_id, feasible_only, conditions)))


def load_candidates(
    store: Store,
    search_id: int,
    feasible_only: bool = False,
    conditions: Sequence[Condition] = (),
    *,
    trials: Sequence[int] | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[CandidateRow]:
    """Candidates of a search with all their metrics, by trial; `conditions`, `trials` and
    the page (`offset`, `limit`) are applied in SQL, so a page of a large search reads
    only its own rows."""
    # not the Optuna parameters (only a resumed search reads them): a dict of every gene
    query = select(Candidate).options(defer(Candidate.params))
    query = query.where(_row_filter(search_id, feasible_only, conditions))
    if trials is not None:
        query = query.where(Candidate.trial.in_(list(trials)))
    query = query.order_by(Candidate.trial).offset(offset).limit(limit)
    with store.session() as s:
        rows = s.scalars(query).all()
        metrics: dict[int, dict[str, float]] = {r.id: {} for r in rows}
        values = select(Metric.candidate_id, Metric.device, Metric.name, Metric.value)
        if trials is None and limit is None:  # most of the search: one read of it all
            values = values.where(Metric.search_id == search_id)
        else:
            values = values.where(Metric.candidate_id.in_(list(metrics)))
        if metrics:
            for cid, device, name, value in s.execute(values):
                if cid in metrics:
                    metrics[cid][join_metric(device, name)] = value
    return [_candidate_row(r, metrics[r.id]) for r in rows]


def _candidate_row(r: Candidate, metrics: dict[str, float]) -> CandidateRow:
    """The searched metrics apart from the supernet-measured ones."""
    searched = {k: v for k, v in metrics.items() if not k.endswith(MEASURED_SUFFIX)}
    suffix = MEASURED_SUFFIX
    measured = {k.removesuffix(suffix): v for k, v in metrics.items() if k.endswith(suffix)}
    if r.quality_source == "supernet":  # the search itself measured its quality
        measured = {k: v for k, v in searched.items() if k in NETWORK_LEVEL} | measured
        measured = {k: v for k, v in measured.items() if k not in NETWORK_METRICS}
    return CandidateRow(
        r.trial, r.generation, r.arch_id, r.arch, r.feasible, r.violation, searched, measured
    )


def _metric_columns(
    s: Session, search_id: int, names: Sequence[str], ids: np.ndarray
) -> dict[str, np.ndarray]:
    """For each metric, its value on each candidate of `ids` (sorted ids), NaN where that
    candidate has none. Each metric is one read of the covering index (search_id, device,
    name, candidate_id, value): about 50 ms per 100,000 candidates on SQLite."""
    columns = {}
    for name in dict.fromkeys(names):
        device, metric = split_metric(name)
        rows = fetch_rows(
            s,
            select(Metric.candidate_id, Metric.value)
            .where(Metric.search_id == search_id, Metric.device == device, Metric.name == metric)
            .order_by(Metric.candidate_id),
        )
        column = np.full(len(ids), np.nan)
        if rows and len(ids):
            pairs = np.array(rows, dtype=float).reshape(-1, 2)
            cids = pairs[:, 0].astype(np.int64)
            at = np.minimum(np.searchsorted(ids, cids), len(ids) - 1)
            mine = ids[at] == cids
            column[at[mine]] = pairs[mine, 1]
        columns[name] = column
    return columns


def candidate_points(
    store: Store, search_id: int, metrics: Sequence[str] = (), target: str | None = None
) -> dict[str, Any]:
    """Every candidate's values of `metrics` (default: the search's objectives), column by
    column, for a scatter of a whole search: `trial`, `feasible`, and per metric one list
    (None where a candidate lacks the metric). Names resolve as in a `--where` filter."""
    config = load_config(store, search_id)
    if metrics:
        names = [_resolve_metric(name, config, target) for name in metrics]
    else:
        names = [o.metric for o in objectives_for(config, target)]
    with store.session() as s:
        rows = fetch_rows(
            s,
            select(Candidate.id, Candidate.trial, Candidate.feasible)
            .where(Candidate.search_id == search_id)
            .order_by(Candidate.id),
        )
        ids = np.array([cid for cid, _, _ in rows], dtype=np.int64)
        columns = _metric_columns(s, search_id, names, ids)
    order = np.argsort([trial for _, trial, _ in rows], kind="stable")  # by trial
    return {
        "search": search_id,
        "trial": [rows[i][1] for i in order],
        "feasible": [bool(rows[i][2]) for i in order],
        "metrics": {
            name: [None if math.isnan(v) else v for v in column[order].tolist()]
            for name, column in columns.items()
        },
    }


def objectives_for(config: SearchConfig, target: str | None) -> list[Objective]:
    if target is None:
        return list(config.objectives)
    if target not in config.targets:
        raise QueryError(f"search has no target {target!r}; targets: {list(config.targets)}")
    # the network's own objectives (quality, macs, params) hold on every device
    chosen = [
        o
        for o in config.objectives
        if o.metric in NETWORK_LEVEL or o.metric.startswith(f"{target}.")
    ]
    if not any(o.metric.startswith(f"{target}.") for o in chosen):
        chosen.append(Objective(metric=f"{target}.latency_ms", goal="minimize"))
    return chosen


def pareto_front(
    store: Store,
    search_id: int,
    target: str | None = None,
    where: Sequence[str] = (),
    measured: bool = False,
) -> Front:
    """The non-dominated feasible candidates (one per arch), best quality first.

    `measured=True` ranks by the supernet-measured quality where a candidate has one
    (predictor+verify searches measure their final front).

    Only the objectives and the filtered metrics of the feasible candidates are read, as
    columns; whole rows are loaded for the front alone."""
    config = load_config(store, search_id)
    objectives = objectives_for(config, target)
    conditions = parse_conditions(where, config, target)
    names = [o.metric for o in objectives]
    overrides = {  # quality measured with the supernet is stored beside the searched value
        o.metric: o.metric + MEASURED_SUFFIX
        for o in objectives
        if measured and o.metric in NETWORK_LEVEL
    }
    with store.session() as s:
        ids = _first_feasible_of_each_arch(s, search_id)
        wanted = [*names, *(c.metric for c in conditions), *overrides.values()]
        columns = _metric_columns(s, search_id, wanted, ids)
    keep = np.ones(len(ids), dtype=bool)
    for cond in conditions:  # NaN (no such metric) meets no condition, as in SQL
        with np.errstate(invalid="ignore"):
            keep &= OPERATORS[cond.op](columns[cond.metric], cond.value)
    points = np.empty((len(ids), len(objectives)))
    for k, o in enumerate(objectives):
        values = columns[o.metric].copy()
        if o.metric in overrides:
            checked = columns[overrides[o.metric]]
            values = np.where(np.isnan(checked), values, checked)
        points[:, k] = -values if o.goal == "maximize" else values
    keep &= ~np.isnan(points).any(axis=1)
    chosen = ids[np.flatnonzero(keep)[non_dominated(points[keep])]]
    with store.session() as s:
        trials = s.scalars(select(Candidate.trial).where(Candidate.id.in_(chosen.tolist()))).all()
    rows = load_candidates(store, search_id, trials=trials)
    front = sorted(rows, key=lambda c: _quality_value(c, objectives[0], measured))
    return Front(search_id, objectives, front, conditions, config)


def _first_feasible_of_each_arch(s: Session, search_id: int) -> np.ndarray:
    """The sorted ids of the first feasible candidate of each distinct arch. A search
    stores an arch again each time NSGA-II keeps it (a front arch may have hundreds of
    rows), always with the same metrics, so the front is found among the first copies.
    Two reads of covering indexes: (search_id, arch_id) and (search_id, feasible)."""
    firsts = fetch_rows(
        s,
        select(func.min(Candidate.id))
        .where(Candidate.search_id == search_id)
        .group_by(Candidate.arch_id),
    )
    feasible = fetch_rows(
        s,
        select(Candidate.id).where(Candidate.search_id == search_id, Candidate.feasible.is_(True)),
    )
    return np.intersect1d(
        np.array([i for (i,) in firsts], dtype=np.int64),
        np.array([i for (i,) in feasible], dtype=np.int64),
    )


def _quality_value(c: CandidateRow, o: Objective, measured: bool) -> float:
    """The first objective as ranked (smaller is better)."""
    v = c.measured[o.metric] if measured and o.metric in c.measured else c.metrics[o.metric]
    return -v if o.goal == "maximize" else v


# ----- output ---------------------------------------------------------------------------------


def columns_of(front: Front, config: SearchConfig | None = None) -> list[str]:
    """Objectives first, then the limited metrics; with `config`, macs/params once and only
    the metrics a limit or objective names (the table); without, every metric (CSV)."""
    metrics = [o.metric for o in front.objectives]
    every = sorted({k for c in front.front for k in c.metrics} - set(metrics))
    if config is None:
        return ["candidate", "arch_id", *metrics, *every]
    limited = [f"{d}.{m}" for d, t in config.targets.items() for m in t.limits]
    shown = [m for m in limited if m not in metrics]
    network = [m for m in NETWORK_METRICS if m not in metrics]
    return ["candidate", "arch_id", *metrics, *shown, *network]


def to_json(front: Front) -> str:
    if "json" not in front.rendered:
        front.rendered["json"] = json.dumps(
            {
                "search": front.search_id,
                "objectives": [o.model_dump() for o in front.objectives],
                "where": [str(c) for c in front.conditions],
                "front": [c.to_dict() for c in front.front],
            }
        )
    return front.rendered["json"]


def to_csv(front: Front) -> str:
    if "csv" not in front.rendered:
        buffer = io.StringIO()
        cols = columns_of(front)
        writer = csv.writer(buffer)
        writer.writerow([*cols, "top1_measured", "arch"])
        for c in front.front:
            row = c.to_dict()
            writer.writerow([row.get(k) for k in cols] + [c.top1_measured, json.dumps(c.arch)])
        front.rendered["csv"] = buffer.getvalue()
    return front.rendered["csv"]


PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # what the plot may be written as
DEFAULT_PLOT_SUFFIX = ".png"


def plot_file(path: str | Path) -> Path:
    """The file a plot goes to: `front` -> `front.png`; a suffix other than PLOT_SUFFIXES is
    refused (QueryError), so a caller can check it before computing anything."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + DEFAULT_PLOT_SUFFIX)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise QueryError(
            f"--plot {path}: cannot write a {path.suffix!r} file; use one of "
            f"{', '.join(PLOT_SUFFIXES)} (no suffix: {DEFAULT_PLOT_SUFFIX})"
        )
    return path


def plot(
    front: Front, path: str | Path, x_metric: str | None = None, everything: dict | None = None
) -> Path:
    """Quality against a cost metric: every candidate (`everything`, from `candidate_points`
    with the quality and x metrics; left out when None), feasible or not, and the front.
    Returns the path written (see `plot_file`: `front` becomes `front.png`)."""
    path = plot_file(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality, x_metric = plot_axes(front, x_metric)
    if everything is not None and x_metric not in everything["metrics"]:
        raise QueryError(f"the candidates' points have no {x_metric!r} column")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        _draw(ax, front, quality, x_metric, everything)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:  # a failed plot leaves no figure open in a long-lived server
        plt.close(fig)
    return path


def plot_axes(front: Front, x_metric: str | None) -> tuple[str, str]:
    """The plot's quality (y) and cost (x) metrics; QueryError for an x the search lacks."""
    quality = front.objectives[0].metric  # top1 for classifiers, fid for generators
    costs = [o.metric for o in front.objectives[1:]]
    x_metric = x_metric or (costs[0] if costs else None)
    if x_metric is None:
        raise QueryError("the plot needs a cost objective for its x axis")
    assert front.config is not None
    known = [o.metric for o in front.objectives] + [
        f"{device}.{name}"
        for device, metrics in _device_metrics(front.config).items()
        for name in metrics
        if name not in NETWORK_METRICS
    ]
    known = list(dict.fromkeys([*known, *NETWORK_METRICS]))
    if x_metric not in known:
        raise QueryError(
            f"unknown metric {short_repr(x_metric)} for the plot's x axis; "
            f"this search has: {', '.join(known)}"
        )
    return quality, x_metric


def _draw(ax: Any, front: Front, quality: str, x_metric: str, everything: dict | None) -> None:
    """The scatter of every candidate that has the x metric, and the front over it."""
    scale = 100.0 if quality == ACCURACY else 1.0
    if everything is not None:
        xs, ys = everything["metrics"][x_metric], everything["metrics"][quality]
        for feasible, style in (
            (False, {"color": "0.8", "label": "infeasible"}),
            (True, {"color": "tab:blue", "alpha": 0.4, "label": "feasible"}),
        ):
            group = [
                (x, scale * y)
                for x, y, f in zip(xs, ys, everything["feasible"], strict=True)
                if f == feasible and x is not None and y is not None
            ]
            if group:
                ax.scatter(*zip(*group, strict=True), s=8, **style)
    points = sorted(
        (c for c in front.front if x_metric in c.metrics), key=lambda c: c.metrics[x_metric]
    )
    # With more than two objectives the front is not a curve in this projection: no line.
    style = "o-" if len(front.objectives) == 2 else "o"
    ax.plot(
        [c.metrics[x_metric] for c in points],
        [scale * c.metrics[quality] for c in points],
        style,
        color="tab:red",
        markersize=4,
        label=f"front ({len(points)})",
    )
    ax.set_xlabel(x_metric)
    ax.set_ylabel("top-1 (%)" if quality == ACCURACY else quality)
    ax.set_title(f"search {front.search_id}: {quality} vs {x_metric}")
    ax.grid(alpha=0.3)
    ax.legend()


class FrontCache:
    """Recent fronts of a server, each kept while its search's rows are unchanged.

    A front is a function of the query and of the search's stored rows, which change only
    when a generation, a verification or a new status is written; each of those sets the
    search's `updated_at`. So one primary-key read tells whether a kept front still holds.
    A finished search's fronts hold for good. A running search stores a generation every
    fraction of a second, so its front is computed again at most every `refresh_seconds`
    (what a page polling the search sees, at most that much behind the database).
    Concurrent requests for one front wait for one computation of it."""

    def __init__(self, size: int = 64, refresh_seconds: float = 1.0) -> None:
        self.size, self.refresh_seconds = size, refresh_seconds
        self._fronts: OrderedDict[tuple, tuple[tuple, float, Front]] = OrderedDict()
        self._lock = threading.Lock()
        # a bounded set of locks (a front's is picked by its key's hash), not one per key:
        # queries with arbitrary filters must not grow the server's memory
        self._computing = [threading.Lock() for _ in range(16)]

    def front(
        self,
        store: Store,
        search_id: int,
        target: str | None = None,
        where: Sequence[str] = (),
        measured: bool = False,
    ) -> Front:
        key = (store.url, search_id, target, tuple(where), measured)
        # one computation per front at a time: the requests waiting here then find it kept
        with self._computing[hash(key) % len(self._computing)]:
            version = _data_version(store, search_id)
            with self._lock:
                kept = self._fronts.get(key)
            if kept is not None and self._holds(kept, version):
                with self._lock:
                    self._fronts.move_to_end(key)
                return kept[2]
            front = pareto_front(store, search_id, target, where, measured)
            with self._lock:
                self._fronts[key] = (version, time.monotonic(), front)
                self._fronts.move_to_end(key)
                while len(self._fronts) > self.size:
                    self._fronts.popitem(last=False)
            return front

    def _holds(self, kept: tuple[tuple, float, Front], version: tuple) -> bool:
        kept_version, computed_at, _ = kept
        if kept_version == version:
            return True
        still_running = version[1] == kept_version[1] == "running"
        return still_running and time.monotonic() - computed_at < self.refresh_seconds


def _data_version(store: Store, search_id: int) -> tuple:
    """What changes whenever the rows a front is computed from change, status second
    (NotFoundError for an unknown search)."""
    with store.session() as s:
        row = store.search(s, search_id)
        return (row.updated_at, row.status, row.candidates_done, row.generations_done)
