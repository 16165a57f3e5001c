"""A search's rows in SQL: the files it uses, its candidates and metrics, its progress.

One transaction per generation writes the generation's candidates, every metric of each
(quality and costs alike, in `metrics`) and the search's progress together, so a driver
killed at any moment leaves whole generations only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from nas.config import SearchConfig, join_metric, split_metric
from nas.evaluation import SearchResources
from nas.search.state import Metrics, Outcome, SearchState
from nas.store import MEASURED_SUFFIX, Candidate, Metric, Predictor, Search, Store, Supernet


def now() -> datetime:
    return datetime.now(UTC)


def register_artifacts(store: Store, resources: SearchResources) -> tuple[int, int | None]:
    """Rows for the trained file and the predictor (by SHA-256, with their absolute paths),
    shared by the searches that use them."""
    artifact, predictor = resources.artifact, resources.predictor
    with store.session() as s:
        row = s.scalar(select(Supernet).where(Supernet.sha256 == artifact.sha256))
        if row is None:
            row = Supernet(
                sha256=artifact.sha256, path=str(artifact.path), space=artifact.space.name
            )
            s.add(row)
            s.flush()
        supernet_id, predictor_id = row.id, None
        if predictor is not None and predictor.artifact is not None:
            sha = predictor.artifact.sha256
            prow = s.scalar(select(Predictor).where(Predictor.sha256 == sha))
            if prow is None:
                prow = Predictor(
                    sha256=sha,
                    path=str(predictor.artifact.path),
                    supernet_id=supernet_id,
                    metrics=predictor.metrics,
                )
                s.add(prow)
                s.flush()
            predictor_id = prow.id
    return supernet_id, predictor_id


def create_search(
    store: Store, config: SearchConfig, resources: SearchResources, driver: str
) -> int:
    supernet_id, predictor_id = register_artifacts(store, resources)
    with store.session() as s:
        row = Search(
            name=config.name,
            status="running",
            config=config.model_dump(mode="json"),
            space=resources.artifact.space.name,
            supernet_id=supernet_id,
            predictor_id=predictor_id,
            generations_total=config.algorithm.generations,
            driver=driver,
        )
        s.add(row)
        s.flush()
        return row.id


def recorded_hashes(store: Store, search_id: int) -> tuple[str, str | None]:
    """The SHA-256 of the trained file and of the predictor recorded at launch."""
    with store.session() as s:
        row = store.search(s, search_id)
        return row.supernet.sha256, row.predictor.sha256 if row.predictor else None


@dataclass
class StoredCandidate:
    params: dict[str, Any]
    arch_id: str
    metrics: Metrics


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
        StoredCandidate(params, arch_id, per_candidate.get(cid, {}))
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
) -> None:
    """The generation's candidates, their metrics and the search's progress, in one
    transaction."""
    with store.session() as s:
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
            )
        )


def store_measured(store: Store, search_id: int, measured: dict[str, Metrics]) -> None:
    """Quality measured with the supernet for the archs `measured` names (by arch id), on
    every candidate of the search with that arch; replaces an earlier verification."""
    with store.session() as s:
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


def finish(store: Store, search_id: int, status: str, message: str) -> Outcome:
    with store.session() as s:
        s.execute(
            update(Search)
            .where(Search.id == search_id)
            .values(status=status, message=message, finished_at=now(), updated_at=now())
        )
    return outcome(store, search_id, status, message)
