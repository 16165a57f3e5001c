"""A searched candidate as its search stored it, with the trained file the search ran
with (checked by SHA-256): what an export or a fine-tuning starts from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nas.catalog import search_space
from nas.errors import ExportError, NotFoundError
from nas.pareto import load_config, split_bounds
from nas.store import Candidate, Metric, Store
from supernet.errors import CheckpointError, ConfigError
from supernet.family import (
    ModelFamily,
    OpenedArtifact,
    family_of_space,
    open_artifact,
)
from supernet.space import Arch


@dataclass
class StoredCandidate:
    """A candidate as its search stored it, with the trained file the search ran with."""

    config: Any  # the search's SearchConfig
    opened: OpenedArtifact
    arch: Arch
    arch_id: str
    feasible: bool
    candidate_id: int
    quality_source: str | None
    costs: dict[str, dict[str, float]]  # device -> metric -> value
    network: dict[str, float]  # macs, params and the quality metrics
    predictor_sha256: str | None
    # device ("" for quality) -> metric -> (low, high): prediction intervals at the search's
    # coverage (config.coverage), where the cost model or predictor gives them
    bounds: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


def load_candidate(store: Store, search_id: int, candidate: int, purpose: str) -> StoredCandidate:
    """Candidate `candidate` (its number in `nas pareto`) of search `search_id`, and the
    trained file the search ran with, or ExportError: a replaced file gives another
    network. `purpose` ("export", "fine-tune") names the work in that error."""
    config = load_config(store, search_id)
    with store.session() as s:
        search = store.search(s, search_id)
        row = s.scalar(
            select(Candidate).where(Candidate.search_id == search_id, Candidate.trial == candidate)
        )
        if row is None:
            raise NotFoundError(f"search {search_id} has no candidate {candidate}")
        costs: dict[str, dict[str, float]] = {}
        network: dict[str, float] = {}
        for device, name, value in s.execute(
            select(Metric.device, Metric.name, Metric.value).where(Metric.candidate_id == row.id)
        ):
            if device:
                costs.setdefault(device, {})[name] = value
            else:
                network[name] = value
        expected_sha = search.supernet.sha256
        predictor_sha = search.predictor.sha256 if search.predictor else None
        arch, arch_id, feasible, candidate_id = dict(row.arch), row.arch_id, row.feasible, row.id
        source = row.quality_source
    try:
        opened = open_artifact(config.supernet, expected_sha)
    except CheckpointError as err:
        raise ExportError(f"cannot {purpose} from search {search_id}: {err}") from None
    arch = opened.space.validate(arch)  # an SQL row: an edge
    bounds: dict[str, dict[str, tuple[float, float]]] = {}
    for device, values in [*costs.items(), ("", network)]:
        metrics, bounds[device] = split_bounds(values)
        values.clear()
        values.update(metrics)
    return StoredCandidate(
        config,
        opened,
        arch,
        arch_id,
        feasible,
        candidate_id,
        source,
        costs,
        network,
        predictor_sha,
        {device: b for device, b in bounds.items() if b},
    )


def finetuned_weights(path: str | Path, opened: OpenedArtifact, arch_id: str) -> dict[str, Any]:
    """A fine-tuned weights file (`nas finetune`) for this candidate, or ExportError."""
    try:
        return opened.family.require_finetuning().load(path, opened.sha256, arch_id)
    except (CheckpointError, ConfigError) as err:
        raise ExportError(f"cannot export with --weights {path}: {err}") from None


def search_family(store: Store, search_id: int) -> ModelFamily:
    """The model family of a search's trained file, known from its space (no file read)."""
    with store.session() as s:
        row = store.search(s, search_id)
        space = search_space(row.space, row.config)
    return family_of_space(space)
