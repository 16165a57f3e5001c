"""The service core: what the doors (the `nas` CLI, Python users, the HTTP API) call.

Each function takes plain arguments, does the work, and returns data; a door parses its
input, calls one of these and prints or serialises the result. Bad input raises a
`UserError` (nas.errors), which every door reports in one line.

    from nas import core
    outcome = core.launch("experiments/search_mnist.yaml")
    front = core.query_front(outcome.search_id, where=["peak_sram_kb<=6"])
    result = core.export(outcome.search_id, front.front[0].trial, formats="onnx")

Profiling a device (timing archs, building and validating look-up tables) is nas.profiling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

import latency_models as lm
from nas import export as exports
from nas.catalog import describe_space, family_kind, search_space
from nas.catalog import get_hardware as get_hardware  # the doors' API: re-exported
from nas.catalog import list_families as list_families
from nas.catalog import list_hardware as list_hardware
from nas.catalog import list_spaces as list_spaces
from nas.catalog import space_extremes as space_extremes
from nas.config import NETWORK_METRICS, SearchConfig
from nas.domain import search_domain
from nas.errors import NotFoundError, UserError
from nas.export import ExportResult, export_candidate
from nas.finetune import FinetuneOutcome, finetune_candidate
from nas.pareto import (
    Front,
    FrontCache,
    candidate_points,
    count_candidates,
    load_candidates,
    load_config,
    pareto_front,
    parse_conditions,
    plot,
    plot_axes,
    plot_file,
)
from nas.resources import CheckedSearch, check_search_config, load_search_config
from nas.search import Outcome, cancel_search, check_resumable, launch_search, resume_search
from nas.search import record as record_search
from nas.store import DEFAULT_URL, Predictor, Search, Store, Supernet, lease
from nas.store.status import SEARCH_UNFINISHED
from supernet.io import merge_overrides
from supernet.quantization import DEFAULT_CALIBRATION_IMAGES

DATABASE_ENV = "NAS_DATABASE_URL"


def database_url(db: str | None = None, configured: str | None = None) -> str:
    """The database to use: `db` if given (--db), else $NAS_DATABASE_URL, else the search
    config's `database` (`configured`), else sqlite:///runs/nas.db. One rule for every
    command, so a search is launched into the database the other commands read."""
    return db or os.environ.get(DATABASE_ENV) or configured or DEFAULT_URL


# A database as the core's functions take it: a URL (or None, for the rule of
# `database_url`), or a Store already open (a server's, whose connections it reuses).
Database = str | Store | None


def open_store(db: Database = None, create: bool = True) -> Store:
    """The store the database rule picks; `create=False` (the commands that only read)
    refuses a SQLite file that does not exist instead of creating an empty database."""
    if isinstance(db, Store):
        return db
    return Store(database_url(db), create=create)


def check(
    config: str | Path | dict[str, Any] | SearchConfig,
    workers: int | None = None,
    ray_address: str | None = None,
    source: str = "<config>",
) -> CheckedSearch:
    """Check a search config (a YAML path, a mapping, or a SearchConfig) with the overrides
    that are not None, opening the files and device models it names (see nas.resources).
    `source` names a config that is not a file in the errors ("request body")."""
    overrides = {"workers": workers, "ray_address": ray_address}
    if isinstance(config, str | Path):
        return load_search_config(config, **overrides)
    raw = config.model_dump(mode="json") if isinstance(config, SearchConfig) else dict(config)
    return check_search_config(merge_overrides(raw, overrides), source)


def record(
    config: str | Path | dict[str, Any] | SearchConfig | CheckedSearch,
    db: Database = None,
    workers: int | None = None,
    ray_address: str | None = None,
    source: str = "<config>",
) -> int:
    """Check a search config and record the search, leased to nobody; returns its id. No
    evaluator is built and no Ray started: a driver takes the search (`resume`, or the
    worker a server starts). `workers` and `ray_address` override the config's."""
    checked = _checked_for(config, db, workers, ray_address, source)
    return record_search(checked, _store_for(checked, db))


def launch(
    config: str | Path | dict[str, Any] | SearchConfig | CheckedSearch,
    db: Database = None,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = False,
    on_generation: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Record a search as `record` does, and run it in this process to its end."""
    checked = _checked_for(config, db, workers, ray_address, "<config>")
    store = _store_for(checked, db)
    return launch_search(checked, store, progress=progress, on_generation=on_generation)


def _checked_for(
    config: str | Path | dict[str, Any] | SearchConfig | CheckedSearch,
    db: Database,
    workers: int | None,
    ray_address: str | None,
    source: str,
) -> CheckedSearch:
    """The config checked with the overrides, its `database` the one the rule of
    `database_url` picks (a Store given as `db`: that store's)."""
    if not isinstance(config, CheckedSearch):
        config = check(config, workers, ray_address, source)
    elif workers is not None or ray_address is not None:
        pairs = (("workers", workers), ("ray_address", ray_address))
        update = {k: v for k, v in pairs if v is not None}
        config = replace(config, config=config.config.model_copy(update=update))
    configured = config.config.database if "database" in config.config.model_fields_set else None
    url = db.url if isinstance(db, Store) else database_url(db, configured)
    return replace(config, config=config.config.model_copy(update={"database": url}))


def _store_for(checked: CheckedSearch, db: Database) -> Store:
    return db if isinstance(db, Store) else Store(checked.config.database)


def resume(
    search_id: int,
    db: Database = None,
    force: bool = False,
    progress: bool = False,
    on_generation: Callable[[Outcome], None] | None = None,
    supernet: str | Path | None = None,
    predictor: str | Path | None = None,
) -> Outcome:
    """Continue an unfinished search with the files recorded at its launch (`supernet` and
    `predictor` name other paths to the same files: their SHA-256 must be the recorded one).
    `force` takes the search over from a driver that still holds its lease. A database
    that does not exist holds no search: a StoreError, and nothing is created."""
    return resume_search(
        search_id,
        open_store(db, create=False),
        force=force,
        supernet=supernet,
        predictor=predictor,
        progress=progress,
        on_generation=on_generation,
    )


def can_resume(search_id: int, db: Database = None, force: bool = False) -> None:
    """SearchError unless `resume` would take the search now (unfinished, and no live driver
    holds it unless `force`): what a door checks before starting a worker for it."""
    check_resumable(search_id, open_store(db, create=False), force)


def cancel(search_id: int, db: Database = None) -> str:
    """Ask a running search to stop after its current generation; returns its status (a
    StoreError, creating nothing, where the database does not exist)."""
    return cancel_search(search_id, open_store(db, create=False))


def search_summary(row: Search) -> dict[str, Any]:
    """A search as JSON-able data: status, progress, best values, timing, its config."""
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "finished": row.status not in SEARCH_UNFINISHED,
        "space": row.space,
        "generations": f"{row.generations_done}/{row.generations_total}",
        "candidates": row.candidates_done,
        "evaluated": row.evaluations_done,
        "feasible": row.feasible_done,
        "best": row.best,
        "seconds": round(row.seconds, 1),
        "message": row.message,
        "created_at": lease.iso(row.created_at),
        "finished_at": lease.iso(row.finished_at),
        "evaluation": row.config.get("evaluation"),
        "targets": row.config.get("targets"),
        "objectives": row.config.get("objectives"),
    }


def page(items: list[Any], total: int, offset: int) -> dict[str, Any]:
    """One page of a listing, as every listing returns it: the rows, how many there are in
    all, and where the page starts. Each listing pages in SQL (a LIMIT/OFFSET query and a
    COUNT), never in memory."""
    return {"items": items, "total": total, "offset": offset}


def list_searches(db: Database = None, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
    """A page of searches, oldest first (`limit` None: all of them from `offset` on)."""
    store = open_store(db, create=False)
    with store.session() as s:
        total = s.scalar(select(func.count()).select_from(Search)) or 0
        rows = s.scalars(select(Search).order_by(Search.id).offset(offset).limit(limit))
        return page([search_summary(r) for r in rows], total, offset)


def get_search(search_id: int, db: Database = None) -> dict[str, Any]:
    """One search's summary, with the part of its space its targets restrict it to and its
    config (launching which repeats the search)."""
    store = open_store(db, create=False)
    with store.session() as s:
        row = store.search(s, search_id)
        info, config = search_summary(row), dict(row.config)
    info["domain"] = _domain_of(info["space"], config, list(info["targets"] or {}))
    try:  # what the page draws archs with: a space that is not a preset is in no listing
        info["space_info"] = describe_space(search_space(info["space"], config))
    except UserError:
        info["space_info"] = None
    info["config"] = {k: v for k, v in config.items() if k != "database"}  # the server's own
    return info


def _domain_of(
    space_name: str, config: dict[str, Any], devices: list[str]
) -> dict[str, Any] | str | None:
    """The restriction of nas.domain, recomputed from the search's space and devices
    (None: the whole space); a description of why when a device can no longer be loaded."""
    try:
        hardware = {name: lm.load_hardware(name) for name in devices}
        domain = search_domain(search_space(space_name, config), hardware)
    except UserError as err:
        return f"unknown ({err})"
    return domain.to_dict() if domain else None


def query_front(
    search_id: int,
    target: str | None = None,
    where: Sequence[str] = (),
    measured: bool = False,
    db: Database = None,
    cache: FrontCache | None = None,
) -> Front:
    """The non-dominated feasible candidates of a search (see nas.pareto); a server passes
    its `cache` of recent fronts."""
    store = open_store(db, create=False)
    if cache is not None:
        return cache.front(store, search_id, target, where, measured)
    return pareto_front(store, search_id, target, where, measured)


def plot_front(
    front: Front, path: str | Path, x_metric: str | None = None, db: Database = None
) -> Path:
    """Plot a front (from `query_front`) over every candidate of its search: quality against
    `x_metric`, by default the first cost objective. Returns the file written (`front` ->
    `front.png`); a bad suffix or metric is refused before anything is read."""
    plot_file(path)
    quality, x_metric = plot_axes(front, x_metric)
    store = open_store(db, create=False)
    return plot(
        front, path, x_metric, candidate_points(store, front.search_id, [quality, x_metric])
    )


def search_points(
    search_id: int, metrics: Sequence[str] = (), target: str | None = None, db: Database = None
) -> dict[str, Any]:
    """Every candidate's values of `metrics` (default: the objectives), column by column."""
    return candidate_points(open_store(db, create=False), search_id, metrics, target)


def list_candidates(
    search_id: int,
    feasible_only: bool = False,
    offset: int = 0,
    limit: int = 100,
    where: Sequence[str] = (),
    target: str | None = None,
    db: Database = None,
) -> dict[str, Any]:
    """One page of a search's candidates, by trial: `items`, `total` and `offset`. `where`
    filters as `nas pareto --where` does (`target` names the device of a bare metric)."""
    store = open_store(db, create=False)
    conditions = parse_conditions(where, load_config(store, search_id), target)
    total = count_candidates(store, search_id, feasible_only, conditions)
    rows = load_candidates(store, search_id, feasible_only, conditions, offset=offset, limit=limit)
    return page([r.to_dict() for r in rows], total, offset)


def _family_of_data_space(session: Any, row: Supernet) -> str | None:
    """The family of a supernet whose space was defined as data (no name finds it): from the
    definition a search on the file stored (None: no search has one)."""
    query = select(Search.config).where(Search.supernet_id == row.id).limit(1)
    config = session.scalar(query)
    try:
        return family_kind(search_space(row.space, config)) if config else None
    except UserError:
        return None


def list_supernets(db: Database = None) -> dict[str, list[dict[str, Any]]]:
    """The trained files searches have used, by SHA-256: supernets and predictors."""
    with open_store(db, create=False).session() as s:
        nets = [
            {
                "id": r.id,
                "sha256": r.sha256,
                "path": r.path,
                "space": r.space,
                "family": family_kind(r.space) or _family_of_data_space(s, r),
            }
            for r in s.scalars(select(Supernet).order_by(Supernet.id))
        ]
        predictors = [
            {"id": r.id, "sha256": r.sha256, "path": r.path, "supernet_id": r.supernet_id}
            for r in s.scalars(select(Predictor).order_by(Predictor.id))
        ]
    # a relative path in a config is read from the working folder: a form says which
    return {"supernets": nets, "predictors": predictors, "working_folder": str(Path.cwd())}


def export(
    search_id: int,
    candidate: int,
    formats: str | list[str] | None = None,
    out: str | Path | None = None,
    db: Database = None,
    force: bool = False,
    quantize: str | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    weights: str | Path | None = None,
) -> ExportResult:
    """Extract a candidate, write its model files and card, record the export; `force`
    replaces the files of a folder that already holds some. `quantize="int8"` adds the
    int8 ONNX file (`onnx_int8`), and the int8 flatbuffer where `tflite` is asked for,
    calibrated on `calibration_images` training images.
    `weights`: a fine-tuned weights file (`finetune`) instead of the inherited weights.
    `formats` None: the search's defaults (`default_formats`)."""
    store = open_store(db, create=False)
    formats, skipped = _export_formats(store, search_id, formats, quantize)
    return export_candidate(
        store,
        search_id,
        candidate,
        formats,
        out,
        force,
        calibration_images=calibration_images,
        weights=weights,
        skipped=skipped,
    )


def _export_formats(
    store: Store, search_id: int, formats: str | Sequence[str] | None, quantize: str | None
) -> tuple[list[str], dict[str, str]]:
    """What an export of the search writes (nas.export.resolve_formats): one rule for the
    CLI's export and the service's export jobs."""
    config = load_config(store, search_id)
    return exports.resolve_formats(
        config, exports.search_family(store, search_id), formats, quantize
    )


def default_formats(search_id: int, db: Database = None) -> list[str]:
    """The formats an export of the search writes when none are named: the usual files plus
    the one each target runs at its precision (nas.export.default_formats)."""
    return _export_formats(open_store(db, create=False), search_id, None, None)[0]


def export_formats(search_id: int, db: Database = None) -> dict[str, Any]:
    """What an export of the search can write (nas.export.format_choices): its family's
    formats with labels, the defaults, and the quantizations that apply."""
    store = open_store(db, create=False)
    config = load_config(store, search_id)
    return exports.format_choices(config, exports.search_family(store, search_id))


def finetune(
    search_id: int,
    candidate: int,
    options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    db: Database = None,
    progress: bool = False,
) -> FinetuneOutcome:
    """Fine-tune a candidate (quantization-aware by default, where post-training int8
    loses more than the threshold); export the result with `weights`. `options`: the
    family's fine-tuning settings (a classifier's: qat, epochs, lr, batch_size,
    threshold_points, calibration_images, seed), its defaults for those not given."""
    store = open_store(db, create=False)
    return finetune_candidate(store, search_id, candidate, dict(options or {}), out, progress)


def get_candidate(search_id: int, number: int, db: Database = None) -> dict[str, Any]:
    """One candidate as the search stored it (arch, feasibility, quality and costs), plus
    `devices`: its predicted cost on every registered device. A device the search targeted
    is costed at the batch and options it used, any other at batch 1 with its defaults; a
    device whose model cannot cost this space gives an `error` instead."""
    store = open_store(db, create=False)
    with store.session() as s:
        row = store.search(s, search_id)
        space_name, config = row.space, dict(row.config)
        targets = dict(config.get("targets") or {})
    found = load_candidates(store, search_id, trials=[number])
    if not found:
        raise NotFoundError(f"search {search_id} has no candidate {number}")
    candidate = found[0]
    space = search_space(space_name, config)
    spec = space.to_spec(space.validate(candidate.arch))  # an SQL row: an edge
    devices: dict[str, dict[str, Any]] = {}
    for name in lm.list_hardware():
        target = targets.get(name) or {}
        batch, options = int(target.get("batch", 1)), dict(target.get("options") or {})
        entry: dict[str, Any] = {"target": name in targets, "batch": batch, "options": options}
        try:
            hw = lm.load_hardware(name)
            costs = hw.predict(spec if batch == 1 else spec.with_batch(batch), **options)
            entry["costs"] = {k: float(v) for k, v in costs.items() if k not in NETWORK_METRICS}
        except UserError as err:
            entry["error"] = str(err)
        devices[name] = entry
    return {
        **candidate.to_dict(),
        "measured": candidate.measured,
        "quality_source": candidate.quality_source,
        "devices": devices,
    }


def queue_export(
    search_id: int,
    candidate: int,
    data_dir: str | Path,
    formats: str | Sequence[str] | None = None,
    quantize: str | None = None,
    db: Database = None,
) -> int:
    """Record an export to be run as a job (`run_export_job`, in a worker); returns its id.
    Its files go under `data_dir`/exports/ID. `formats` and `quantize` as for `export`."""
    store = open_store(db, create=False)
    formats, _ = _export_formats(store, search_id, formats, quantize)
    return exports.queue_export(store, search_id, candidate, formats, Path(data_dir))


def run_export_job(export_id: int, db: Database = None) -> dict[str, Any]:
    """Run a queued export (or one whose worker died); returns it as `get_export` does."""
    store = open_store(db, create=False)
    exports.run_export_job(store, export_id)
    return exports.export_info(store, export_id)


def get_export(export_id: int, db: Database = None) -> dict[str, Any]:
    """An export: status, message, model card and its files."""
    return exports.export_info(open_store(db, create=False), export_id)


def export_file(export_id: int, name: str, db: Database = None) -> Path:
    """One file of a completed export, by a name from its own file list (nothing else)."""
    return exports.export_file(open_store(db, create=False), export_id, name)


def list_exports(
    db: Database = None, search_id: int | None = None, offset: int = 0, limit: int | None = None
) -> dict[str, Any]:
    """A page of exports (of one search, with `search_id`), newest first, whichever door
    made them, with their files (`limit` None: all of them from `offset` on)."""
    store = open_store(db, create=False)
    items, total = exports.list_exports(store, search_id, offset, limit)
    return page(items, total, offset)
