"""A search's rows in SQL: the files it uses, its candidates and metrics, its progress.

One transaction per generation writes the generation's candidates, every metric of each
(quality and costs alike, in `metrics`) and the search's progress together, so a driver
killed at any moment leaves whole generations only.

Every write of a driver is made under the search's lease: the transaction first renews
`lease_until` on the row, but only while `driver` is still this driver's id. A driver whose
lease was taken over (`resume --force`) finds so there, writes nothing and stops (LeaseLost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nas.config import SearchConfig, join_metric, split_metric
from nas.resources import SearchResources
from nas.search.state import Metrics, Outcome, SearchState
from nas.store import MEASURED_SUFFIX, Candidate, Metric, Predictor, Search, Store, Supernet, lease
from nas.store.lease import now

log = logging.getLogger(__name__)


def _hold(s: Session, search_id: int, driver: str, **values: Any) -> None:
    """Renew `driver`'s lease on the search in this transaction (nas.store.lease.hold)."""
    lease.hold(s, Search, search_id, driver, f"search {search_id}", **values)


def _row_by_sha(store: Store, model: type, sha256: str, make: Callable[[], Any]) -> int:
    """The id of the row of `model` with this SHA-256, made by `make()` if there is none.
    Two processes launching on one new database may both try to insert it: the loser of
    that race reads the winner's row."""
    for attempt in range(2):
        try:
            with store.session() as s:
                row = s.scalar(select(model).where(model.sha256 == sha256))
                if row is None:
                    row = make()
                    s.add(row)
                    s.flush()
                return row.id
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def register_artifacts(store: Store, resources: SearchResources) -> tuple[int, int | None]:
    """Rows for the trained file and the predictor (by SHA-256, with their absolute paths),
    shared by the searches that use them."""
    artifact, predictor = resources.artifact, resources.predictor
    supernet_id = _row_by_sha(
        store,
        Supernet,
        artifact.sha256,
        lambda: Supernet(
            sha256=artifact.sha256, path=str(artifact.path), space=artifact.space.name
        ),
    )
    if predictor is None or predictor.artifact is None:
        return supernet_id, None
    predictor_file = predictor.artifact
    predictor_id = _row_by_sha(
        store,
        Predictor,
        predictor_file.sha256,
        lambda: Predictor(
            sha256=predictor_file.sha256,
            path=str(predictor_file.path),
            supernet_id=supernet_id,
            metrics=predictor.metrics,
        ),
    )
    return supernet_id, predictor_id


def create_search(store: Store, config: SearchConfig, resources: SearchResources) -> int:
    """The search's row, leased to nobody (the driver that takes it sets its own id)."""
    supernet_id, predictor_id = register_artifacts(store, resources)
    with store.session() as s:
        row = Search(
            name=config.name,
            status="running",
            config=config.model_dump(mode="json"),
            space=resources.artifact.space.name,
            supernet_id=supernet_id,
            predictor_id=predictor_id,
            generations_total=config.generations_total,
            driver="",
            lease_until=None,
        )
        s.add(row)
        s.flush()
        return row.id


@dataclass
class RecordedFile:
    path: str  # absolute, as opened at launch
    sha256: str


def _own_path(config: dict[str, Any], key: str, registered: str) -> str:
    """The path of a file as this search opened it: its checked config holds the absolute
    path. A `supernets`/`predictors` row is shared by every search with that SHA-256 and
    keeps the path of the first one, which another copy may have been (or deleted since).
    A config that holds no absolute path (a row stored before configs did) falls back to it."""
    own = config.get(key)
    return own if isinstance(own, str) and Path(own).is_absolute() else registered


def recorded_files(store: Store, search_id: int) -> tuple[RecordedFile, RecordedFile | None]:
    """The trained file and the predictor this search was launched with (absolute paths)."""
    with store.session() as s:
        row = store.search(s, search_id)
        predictor = row.predictor
        return (
            RecordedFile(_own_path(row.config, "supernet", row.supernet.path), row.supernet.sha256),
            RecordedFile(_own_path(row.config, "predictor", predictor.path), predictor.sha256)
            if predictor is not None
            else None,
        )


@dataclass
class StoredCandidate:
    params: dict[str, Any]
    arch_id: str
    metrics: Metrics
    generation: int


def stored_candidates(
    store: Store, search_id: int, generations_done: int
) -> tuple[list[StoredCandidate], float]:
    """The stored candidates in trial order (with every searched metric) and the seconds
    spent so far: what a resumed driver rebuilds its study and state from."""
    with store.session() as s:
        rows = s.execute(
            select(Candidate.id, Candidate.params, Candidate.arch_id, Candidate.generation)
            .where(Candidate.search_id == search_id)
            .order_by(Candidate.trial)
        ).all()
        metric_rows = s.execute(
            select(Metric.candidate_id, Metric.device, Metric.name, Metric.value).where(
                Metric.search_id == search_id
            )
        ).all()
        seconds = s.get(Search, search_id).seconds
    per_candidate: dict[int, Metrics] = {}
    for cid, device, name, value in metric_rows:
        if not (device == "" and name.endswith(MEASURED_SUFFIX)):
            per_candidate.setdefault(cid, {})[join_metric(device, name)] = value
    stored = [
        StoredCandidate(params, arch_id, per_candidate.get(cid, {}), generation)
        for cid, params, arch_id, generation in rows
        if generation < generations_done  # a generation is stored whole or not at all
    ]
    return stored, seconds


@dataclass
class GenerationRow:
    trial: int
    params: dict[str, Any]
    arch: dict[str, Any]
    arch_id: str
    metrics: Metrics
    excess: list[float]


def store_generation(
    store: Store,
    search_id: int,
    generation: int,
    rows: Sequence[GenerationRow],
    evaluated: int,
    state: SearchState,
    quality_source: str,
    driver: str,
    message: str | None = None,
) -> None:
    """The generation's candidates, their metrics and the search's progress (and `message`,
    if given), in one transaction, under `driver`'s lease (renewed; LeaseLost, and nothing
    written, if another driver took it)."""
    with store.session() as s:
        _hold(s, search_id, driver)
        candidate_ids = s.scalars(
            insert(Candidate).returning(Candidate.id, sort_by_parameter_order=True),
            [
                {
                    "search_id": search_id,
                    "trial": r.trial,
                    "generation": generation,
                    "arch_id": r.arch_id,
                    "arch": r.arch,
                    "params": r.params,
                    "feasible": all(v <= 0 for v in r.excess),
                    "violation": float(sum(max(v, 0.0) for v in r.excess)),
                    "quality_source": quality_source,
                }
                for r in rows
            ],
        ).all()
        metric_rows = [
            {
                "search_id": search_id,
                "candidate_id": cid,
                "device": device,
                "name": name,
                "value": value,
            }
            for cid, r in zip(candidate_ids, rows, strict=True)
            for key, value in r.metrics.items()
            for device, name in [split_metric(key)]
        ]
        if metric_rows:
            s.execute(insert(Metric), metric_rows)
        s.execute(
            update(Search)
            .where(Search.id == search_id)
            .values(
                generations_done=generation + 1,
                candidates_done=Search.candidates_done + len(rows),
                evaluations_done=Search.evaluations_done + evaluated,
                feasible_done=state.feasible,
                best=dict(state.best),
                seconds=state.seconds,
                updated_at=now(),
                **({} if message is None else {"message": message}),
            )
        )


def store_measured(store: Store, search_id: int, measured: dict[str, Metrics], driver: str) -> None:
    """Quality measured with the supernet for the archs `measured` names (by arch id), on
    every candidate of the search with that arch; replaces an earlier verification."""
    with store.session() as s:
        _hold(s, search_id, driver, updated_at=now())  # the fronts kept by servers change
        s.execute(
            delete(Metric).where(
                Metric.search_id == search_id,
                Metric.device == "",
                Metric.name.like(f"%{MEASURED_SUFFIX}"),
            )
        )
        candidates = s.execute(
            select(Candidate.id, Candidate.arch_id).where(
                Candidate.search_id == search_id, Candidate.arch_id.in_(list(measured))
            )
        ).all()
        rows = [
            {
                "search_id": search_id,
                "candidate_id": cid,
                "device": "",
                "name": name + MEASURED_SUFFIX,
                "value": value,
            }
            for cid, arch_id in candidates
            for name, value in measured[arch_id].items()
        ]
        if rows:
            s.execute(insert(Metric), rows)


def status_of(store: Store, search_id: int) -> str:
    with store.session() as s:
        return s.scalar(select(Search.status).where(Search.id == search_id))


def generations_done(store: Store, search_id: int) -> int:
    with store.session() as s:
        return s.get(Search, search_id).generations_done


def outcome_of(row: Search, status: str | None = None, message: str | None = None) -> Outcome:
    return Outcome(
        row.id,
        status or row.status,
        row.message if message is None else message,
        row.generations_done,
        row.generations_total,
        row.candidates_done,
        row.evaluations_done,
        row.feasible_done,
        dict(row.best),
        row.seconds,
    )


def outcome(store: Store, search_id: int, status: str, message: str) -> Outcome:
    with store.session() as s:
        return outcome_of(s.get(Search, search_id), status, message)


def finish(store: Store, search_id: int, status: str, message: str, driver: str) -> Outcome:
    """The search's final status, set by the driver that holds its lease (then released)."""
    with store.session() as s:
        _hold(s, search_id, driver, status=status, message=message, updated_at=now())
        s.execute(
            update(Search).where(Search.id == search_id).values(finished_at=now(), lease_until=None)
        )
    return outcome(store, search_id, status, message)
