"""The SQL side of a Pareto query.

`pareto_front(store, search_id, target=..., where=[...])` reads the objectives and filtered
metrics of the feasible candidates as columns (served by a covering index), keeps the
non-dominated ones under the search's objectives (or only those of one device), one per
distinct arch, and loads whole rows for those alone. A `--where` filter may set a limit
tighter than the search used: `peak_sram_kb<=256`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, defer

from latency_models.uncertainty import BOUND_SUFFIXES, bound_keys
from nas.config import (
    ACCURACY,
    NETWORK_METRICS,
    Objective,
    SearchConfig,
    join_metric,
    split_metric,
)
from nas.pareto.conditions import (
    NETWORK_LEVEL,
    OPERATORS,
    Condition,
    _resolve_metric,
    beyond_limits,
    check_target,
    parse_conditions,
)
from nas.pareto.front import non_dominated
from nas.store import MEASURED_SUFFIX, Candidate, Metric, Store, fetch_rows
from supernet.family import quality_metric_names


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
    # metric -> (low, high): its prediction interval at `coverage` (the search's), for the
    # metrics whose model states residuals; stored as "METRIC_low" / "METRIC_high" rows
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    coverage: float | None = None
    # where `metrics`' quality came from: "supernet" (the search measured it) or "predictor"
    quality_source: str = "predictor"

    def value(self, name: str) -> float | None:
        """A metric's value, or a bound's ("device.latency_ms_high"); None if it has none."""
        if name in self.metrics:
            return self.metrics[name]
        for metric, interval in self.bounds.items():
            if name in bound_keys(metric):
                return interval[bound_keys(metric).index(name)]
        return self.metrics.get(_bounded_metric(name))  # exact: no bounds stored

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
            "coverage": self.coverage if self.bounds else None,
            "bounds": {k: {"low": lo, "high": hi} for k, (lo, hi) in self.bounds.items()},
            "arch": self.arch,
        }


@dataclass
class Front:
    search_id: int
    objectives: list[Objective]
    front: list[CandidateRow]
    conditions: list[Condition] = field(default_factory=list)
    config: SearchConfig | None = None  # the search's config, for tables
    # to_json / to_csv text, made once: a server hands one kept front out many times
    rendered: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


def load_config(store: Store, search_id: int) -> SearchConfig:
    with store.session() as s:
        return SearchConfig(**store.search(s, search_id).config)


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
        coverage = SearchConfig(**store.search(s, search_id).config).coverage
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
    return [_candidate_row(r, metrics[r.id], coverage) for r in rows]


def split_bounds(
    metrics: dict[str, float],
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The metrics apart from their bounds: "x_low" and "x_high" beside a metric "x" are
    its interval (latency_models.uncertainty.bound_keys), not metrics of their own."""
    bounds = {}
    for name in metrics:
        low, high = bound_keys(name)
        if low in metrics and high in metrics:
            bounds[name] = (metrics[low], metrics[high])
    bound_names = {key for name in bounds for key in bound_keys(name)}
    return {k: v for k, v in metrics.items() if k not in bound_names}, bounds


def _candidate_row(r: Candidate, metrics: dict[str, float], coverage: float) -> CandidateRow:
    """The searched metrics apart from the supernet-measured ones and the bounds."""
    metrics, bounds = split_bounds(metrics)
    searched = {k: v for k, v in metrics.items() if not k.endswith(MEASURED_SUFFIX)}
    suffix = MEASURED_SUFFIX
    measured = {k.removesuffix(suffix): v for k, v in metrics.items() if k.endswith(suffix)}
    if r.quality_source == "supernet":  # the search itself measured its quality
        measured = {k: v for k, v in searched.items() if k in NETWORK_LEVEL} | measured
        measured = {k: v for k, v in measured.items() if k not in NETWORK_METRICS}
    return CandidateRow(
        r.trial,
        r.generation,
        r.arch_id,
        r.arch,
        r.feasible,
        r.violation,
        searched,
        measured,
        bounds,
        coverage,
        r.quality_source,
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
    for name in columns:  # an exact metric stores no bounds: each is the value itself
        base = _bounded_metric(name)
        if base and base != name and np.isnan(columns[name]).any():
            if base not in columns:
                columns[base] = _metric_columns(s, search_id, [base], ids)[base]
            columns[name] = np.where(np.isnan(columns[name]), columns[base], columns[name])
    return columns


def _bounded_metric(name: str) -> str:
    """ "device.latency_ms_high" -> "device.latency_ms"; "" for a name that is no bound."""
    for suffix in BOUND_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return ""


def candidate_points(
    store: Store, search_id: int, metrics: Sequence[str] = (), target: str | None = None
) -> dict[str, Any]:
    """Every candidate's values of `metrics` (default: the search's objectives), column by
    column, for a scatter of a whole search: `trial`, `feasible`, per metric one list (None
    where a candidate lacks the metric), and `measured`: the positions (in that order) of
    the candidates whose quality was measured on the supernet (`_measured_ids`); a short
    list where few were. Names resolve as in a `--where` filter."""
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
        measured = np.isin(ids, _measured_ids(s, search_id, config))
    order = np.argsort([trial for _, trial, _ in rows], kind="stable")  # by trial
    return {
        "search": search_id,
        "trial": [rows[i][1] for i in order],
        "feasible": [bool(rows[i][2]) for i in order],
        "measured": np.flatnonzero(measured[order]).tolist(),
        "metrics": {
            name: [None if math.isnan(v) else v for v in column[order].tolist()]
            for name, column in columns.items()
        },
    }


def _measured_ids(s: Session, search_id: int, config: SearchConfig) -> np.ndarray:
    """The ids of the candidates whose quality was measured on the supernet, as
    `_candidate_row` tells them: by the search itself (quality_source "supernet"), or by a
    verification beside the prediction (a `*_measured` metric: a few rows of the covering
    index). Only a search that measures stores quality_source "supernet" (nas.search
    runners), so only its rows are read for it: for a predictor search of 100,000
    candidates the column would add 10-30 ms to a points request of ~300 ms."""
    names = sorted(name + MEASURED_SUFFIX for name in quality_metric_names())
    queries = [
        select(Metric.candidate_id).where(
            Metric.search_id == search_id, Metric.device == "", Metric.name.in_(names)
        )
    ]
    if config.measures:
        queries.append(
            select(Candidate.id).where(
                Candidate.search_id == search_id, Candidate.quality_source == "supernet"
            )
        )
    found = [cid for query in queries for (cid,) in fetch_rows(s, query)]
    return np.array(found, dtype=np.int64)


def objectives_for(config: SearchConfig, target: str | None) -> list[Objective]:
    if target is None:
        return list(config.objectives)
    check_target(config, target)
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
    (predictor+verify searches measure their final front). Conditions every feasible
    candidate meets (the search's own limits, or looser) are dropped (`beyond_limits`).

    Only the objectives and the filtered metrics of the feasible candidates are read, as
    columns; whole rows are loaded for the front alone."""
    config = load_config(store, search_id)
    objectives = objectives_for(config, target)
    conditions = beyond_limits(parse_conditions(where, config, target), config)
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
