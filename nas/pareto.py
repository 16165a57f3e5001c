"""Pareto queries over a stored search.

`pareto_front(store, search_id, target=..., where=[...])` loads the feasible candidates (the
filters run in SQL, served by the metrics index), keeps one candidate per distinct arch, and
returns the non-dominated ones under the search's objectives (or only those of one device).
A `--where` filter may set a limit tighter than the search used: `peak_sram_kb<=256`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, or_, select

from nas.config import (
    ACCURACY,
    NETWORK_METRICS,
    Objective,
    SearchConfig,
    join_metric,
    split_metric,
)
from nas.errors import QueryError
from nas.store import MEASURED_SUFFIX, Candidate, Metric, Store
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
    candidates: list[CandidateRow] = field(default_factory=list)  # all, for plots
    conditions: list[Condition] = field(default_factory=list)
    config: SearchConfig | None = None  # the search's config, for tables


def non_dominated(points: np.ndarray) -> list[int]:
    """Indices of the rows no other row dominates (every column is minimised)."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return []
    order = np.lexsort(points.T[::-1])  # sort by the first objective, then the next...
    kept: list[int] = []
    for i in order:
        p = points[i]
        dominated = False
        for j in kept:
            q = points[j]
            if np.all(q <= p) and np.any(q < p):
                dominated = True
                break
        if not dominated:
            kept.append(int(i))
    return sorted(kept)


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


def load_candidates(
    store: Store,
    search_id: int,
    feasible_only: bool = False,
    conditions: Sequence[Condition] = (),
) -> list[CandidateRow]:
    """Candidates of a search with their metrics; conditions are applied in SQL."""
    query = select(Candidate).where(Candidate.search_id == search_id)
    if feasible_only:
        query = query.where(Candidate.feasible.is_(True))
    for cond in conditions:
        compare = OPERATORS[cond.op]
        device, name = split_metric(cond.metric)
        matching = select(Metric.candidate_id).where(
            Metric.search_id == search_id,
            Metric.device == device,
            Metric.name == name,
            compare(Metric.value, cond.value),
        )
        query = query.where(Candidate.id.in_(matching))
    with store.session() as s:
        rows = s.scalars(query.order_by(Candidate.trial)).all()
        ids = [r.id for r in rows]
        metrics: dict[int, dict[str, float]] = {i: {} for i in ids}
        if ids:
            values = s.execute(
                select(Metric.candidate_id, Metric.device, Metric.name, Metric.value).where(
                    Metric.search_id == search_id
                )
            ).all()
            for cid, device, name, value in values:
                if cid in metrics:
                    metrics[cid][join_metric(device, name)] = value
    out = []
    for r in rows:
        searched = {k: v for k, v in metrics[r.id].items() if not k.endswith(MEASURED_SUFFIX)}
        measured = {
            k.removesuffix(MEASURED_SUFFIX): v
            for k, v in metrics[r.id].items()
            if k.endswith(MEASURED_SUFFIX)
        }
        if r.quality_source == "supernet":  # the search itself measured its quality
            measured = {k: v for k, v in searched.items() if k in NETWORK_LEVEL} | measured
            measured = {k: v for k, v in measured.items() if k not in NETWORK_METRICS}
        out.append(
            CandidateRow(
                r.trial,
                r.generation,
                r.arch_id,
                r.arch,
                r.feasible,
                r.violation,
                searched,
                measured,
            )
        )
    return out


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
    names = list(dict.fromkeys(names))
    wanted = [split_metric(name) for name in names]
    with store.session() as s:
        rows = s.execute(
            select(Candidate.id, Candidate.trial, Candidate.feasible)
            .where(Candidate.search_id == search_id)
            .order_by(Candidate.trial)
        ).all()
        position = {cid: i for i, (cid, _, _) in enumerate(rows)}
        columns: dict[str, list[float | None]] = {name: [None] * len(rows) for name in names}
        pairs = or_(*(and_(Metric.device == d, Metric.name == n) for d, n in wanted))
        values = s.execute(
            select(Metric.candidate_id, Metric.device, Metric.name, Metric.value).where(
                Metric.search_id == search_id, pairs
            )
        )
        for cid, device, name, value in values:
            columns[join_metric(device, name)][position[cid]] = value
    return {
        "search": search_id,
        "trial": [trial for _, trial, _ in rows],
        "feasible": [bool(feasible) for _, _, feasible in rows],
        "metrics": columns,
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
    """The non-dominated feasible candidates (one per arch), best accuracy first.

    `measured=True` ranks by the supernet-measured accuracy where a candidate has one
    (predictor+verify searches measure their final front)."""
    config = load_config(store, search_id)
    objectives = objectives_for(config, target)
    conditions = parse_conditions(where, config, target)
    everything = load_candidates(store, search_id)
    feasible = load_candidates(store, search_id, feasible_only=True, conditions=conditions)
    unique: dict[str, CandidateRow] = {}
    for c in feasible:
        unique.setdefault(c.arch_id, c)
    rows = list(unique.values())

    def value(c: CandidateRow, o: Objective) -> float:
        v = c.metrics[o.metric]
        if measured and o.metric in c.measured:
            v = c.measured[o.metric]
        return -v if o.goal == "maximize" else v

    points = np.array([[value(c, o) for o in objectives] for c in rows]).reshape(len(rows), -1)
    front = [rows[i] for i in non_dominated(points)]
    first = objectives[0]  # the quality objective: best first
    front.sort(key=lambda c: value(c, first))
    return Front(search_id, objectives, front, everything, conditions, config)


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
    return json.dumps(
        {
            "search": front.search_id,
            "objectives": [o.model_dump() for o in front.objectives],
            "where": [str(c) for c in front.conditions],
            "front": [c.to_dict() for c in front.front],
        }
    )


def to_csv(front: Front) -> str:
    buffer = io.StringIO()
    cols = columns_of(front)
    writer = csv.writer(buffer)
    writer.writerow([*cols, "top1_measured", "arch"])
    for c in front.front:
        row = c.to_dict()
        writer.writerow([row.get(k) for k in cols] + [c.top1_measured, json.dumps(c.arch)])
    return buffer.getvalue()


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


def plot(front: Front, path: str | Path, x_metric: str | None = None) -> Path:
    """Accuracy against a cost metric; all candidates, the feasible ones and the front.
    Returns the path written (see `plot_file`: `front` becomes `front.png`)."""
    path = plot_file(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = front.objectives[0].metric  # top1 for classifiers, fid for generators
    scale = 100.0 if quality == ACCURACY else 1.0
    costs = [o.metric for o in front.objectives[1:]]
    x_metric = x_metric or (costs[0] if costs else None)
    if x_metric is None:
        raise QueryError("the plot needs a cost objective for its x axis")
    known = sorted(set().union(*(c.metrics for c in front.candidates or front.front)))
    if known and x_metric not in known:
        raise QueryError(
            f"unknown metric {short_repr(x_metric)} for the plot's x axis; "
            f"the candidates have: {', '.join(known)}"
        )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        _draw(ax, front, quality, scale, x_metric)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:  # a failed plot leaves no figure open in a long-lived server
        plt.close(fig)
    return path


def _draw(ax: Any, front: Front, quality: str, scale: float, x_metric: str) -> None:
    """The scatter of every candidate that has the x metric, and the front over it."""
    everything = [c for c in front.candidates if x_metric in c.metrics]
    infeasible = [c for c in everything if not c.feasible]
    feasible = [c for c in everything if c.feasible]
    for group, style in (
        (infeasible, {"color": "0.8", "label": "infeasible"}),
        (feasible, {"color": "tab:blue", "alpha": 0.4, "label": "feasible"}),
    ):
        if group:
            ax.scatter(
                [c.metrics[x_metric] for c in group],
                [scale * c.metrics[quality] for c in group],
                s=8,
                **style,
            )
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
