"""Exports as jobs (the HTTP API): an export is a row queued by `queue_export`, then run by
`run_export_job` in a worker process that holds the row's lease (nas.store.lease), as a
search's driver holds its search's: a restarted server runs an export whose worker died,
and two workers (of two servers) cannot both run one. Listing and reading exports, and
serving their files by name, are here too."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nas.errors import GoneError, LeaseLost, NotFoundError, UserError
from nas.export.formats import parse_formats
from nas.export.run import CARD_NAME, STAGING_MARK, export_candidate, staging_folders
from nas.store import Candidate, Export, Search, Store, lease
from nas.store.lease import now
from nas.store.status import COMPLETED, EXPORT_UNFINISHED, FAILED, QUEUED, RUNNING
from supernet.io import file_sha256

log = logging.getLogger(__name__)


def queue_export(
    store: Store, search_id: int, candidate: int, formats: Sequence[str], data_dir: Path
) -> int:
    """Record an export of a candidate to be run by a worker; returns its id. Its files go to
    `data_dir`/exports/ID. Bad formats and unknown searches or candidates are refused here,
    before any worker starts."""
    formats = parse_formats(formats)
    with store.session() as s:
        store.search(s, search_id)
        candidate_id = s.scalar(
            select(Candidate.id).where(
                Candidate.search_id == search_id, Candidate.trial == candidate
            )
        )
        if candidate_id is None:
            raise NotFoundError(f"search {search_id} has no candidate {candidate}")
        record = Export(
            search_id=search_id,
            candidate_id=candidate_id,
            formats=formats,
            out_dir="",
            card={},
            status=QUEUED,
        )
        s.add(record)
        s.flush()
        record.out_dir = str((data_dir / "exports" / str(record.id)).resolve())
        return record.id


def _export_row(s: Session, export_id: int) -> Export:
    row = s.get(Export, export_id)
    if row is None:
        raise NotFoundError(f"no export {export_id}")
    return row


def claim_export(store: Store, export_id: int, driver: str) -> bool:
    """Make `driver` the export's worker if it is queued, or running under a lease nobody
    holds (its worker died): one compare-and-set on the status and driver seen, so that of
    two workers claiming at once one wins."""
    with store.session() as s:
        row = _export_row(s, export_id)
        if row.status not in EXPORT_UNFINISHED:
            return False
        if row.status == RUNNING and lease.holder(row) is not None:
            return False
        seen_status, seen_driver = row.status, row.driver
    return lease.take(
        store,
        Export,
        export_id,
        driver,
        seen_driver,
        only_if_expired=False,
        where=(Export.status == seen_status,),
        status=RUNNING,
        message="",
    )


def remove_abandoned_staging(store: Store, out_dir: Path) -> list[Path]:
    """Remove the staging folders (`.ID.partial-*`, see nas.export.run) that killed workers
    left beside the exports' folders, and return them. Called by the worker of the export
    whose folder is `out_dir` once it holds that export's lease: any staging folder of that
    export is a dead worker's, since no other worker may write it now; so is any of an
    export that has ended. The staging folder of another unfinished export is left alone:
    a live worker (perhaps of another server) may be writing it, and when its worker is
    gone, the worker that takes its lease next removes it."""
    exports_dir = out_dir.parent
    staged: dict[int, list[Path]] = {}
    for path in exports_dir.iterdir() if exports_dir.is_dir() else ():
        owner = path.name[1:].partition(STAGING_MARK)[0]
        if path.name.startswith(".") and STAGING_MARK in path.name and owner.isdigit():
            staged.setdefault(int(owner), []).append(path)
    ended: set[int] = set()
    if staged:
        with store.session() as s:
            ended = set(
                s.scalars(
                    select(Export.id).where(
                        Export.id.in_(list(staged)), Export.status.not_in(EXPORT_UNFINISHED)
                    )
                )
            )
    abandoned = [path for owner in ended for path in staged[owner]] + staging_folders(out_dir)
    for path in abandoned:
        shutil.rmtree(path, ignore_errors=True)
    if abandoned:
        log.info("removed staging folders left by killed export workers: %s", abandoned)
    return abandoned


def run_export_job(store: Store, export_id: int) -> str:
    """Run a queued export (or one whose worker died); returns its status. An export another
    worker runs, or that has ended, is left alone."""
    driver = lease.driver_id()
    if not claim_export(store, export_id, driver):
        with store.session() as s:
            return _export_row(s, export_id).status
    with store.session() as s:
        row = _export_row(s, export_id)
        trial = s.scalar(select(Candidate.trial).where(Candidate.id == row.candidate_id))
        search_id, formats, out_dir = row.search_id, list(row.formats), Path(row.out_dir)

    try:
        remove_abandoned_staging(store, out_dir)
    except OSError as err:  # a folder that cannot be listed or removed does not stop the export
        log.warning("export %d: cannot remove abandoned staging folders: %s", export_id, err)
    what = f"export {export_id}"
    renew = partial(lease.renew, store, Export, export_id, driver, what)

    def set_phase(text: str) -> None:  # what GET /exports/ID shows while it runs
        with store.session() as s:
            lease.hold(s, Export, export_id, driver, what, phase=text[:200])

    try:
        with lease.heartbeat(renew, what):
            # force: a worker that died may have left some of the files
            export_candidate(
                store,
                search_id,
                trial,
                formats,
                out_dir,
                True,
                (export_id, driver),
                phase=set_phase,
            )
    except LeaseLost as err:
        log.warning("%s", err)
        with store.session() as s:
            return _export_row(s, export_id).status
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        log.error("export %d failed: %s", export_id, message)
        with store.session() as s:
            lease.hold(
                s,
                Export,
                export_id,
                driver,
                f"export {export_id}",
                status=FAILED,
                message=message,
                phase="",
                finished_at=now(),
            )
        return FAILED
    return COMPLETED


def _summary(row: Export, trial: int, search_name: str) -> dict[str, Any]:
    created, finished = lease.aware(row.created_at), lease.aware(row.finished_at)
    return {
        "id": row.id,
        "search": row.search_id,
        "search_name": search_name,
        "candidate": trial,
        "status": row.status,
        "finished": row.status not in EXPORT_UNFINISHED,
        "message": row.message,
        "phase": row.phase,
        "formats": list(row.formats),
        "created_at": lease.iso(created),
        "finished_at": lease.iso(finished),
        "seconds": _seconds(row.status, created, finished),
        "files": _files(row),
    }


def _seconds(status: str, created: datetime | None, finished: datetime | None) -> float | None:
    """From queued (an API export) or started (a CLI export) to finished, or to now while it
    runs; None for an ended row that recorded no end (an export from before migration 0005)."""
    end = now() if status in EXPORT_UNFINISHED else finished
    return round((end - created).total_seconds(), 3) if created and end else None


def _files_of_card(card: dict[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    """The files of an export recorded before migration 0007 (no `files`), as its card names
    them: their bytes and SHA-256 read from the folder where the files are still there."""
    entries = [*card.get("files", {}).items(), ("card", {"path": CARD_NAME})]
    files = []
    for fmt, entry in entries:
        path = out_dir / entry["path"]
        there = path.is_file()
        files.append(
            {
                "name": path.name,
                "format": fmt,
                "bytes": path.stat().st_size if there else None,
                "sha256": entry.get("sha256") or (file_sha256(path) if there else None),
            }
        )
    return files


def _files(row: Export) -> list[dict[str, Any]]:
    """A completed export's files as recorded, each with `available`: still in its folder
    with the bytes recorded (a download checks its SHA-256 too, see `export_file`)."""
    if row.status != COMPLETED:
        return []
    out_dir = Path(row.out_dir)
    recorded = row.files if row.files is not None else _files_of_card(row.card, out_dir)
    files = []
    for entry in recorded:
        path = out_dir / entry["name"]
        there = path.is_file() and entry["bytes"] in (None, path.stat().st_size)
        files.append({**entry, "available": there})
    return files


def list_exports(
    store: Store, search_id: int | None = None, offset: int = 0, limit: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """A page of exports (of one search, with `search_id`), newest first: status, phase and
    files, not cards; and how many there are in all."""
    query = (
        select(Export, Candidate.trial, Search.name)
        .join(Candidate, Candidate.id == Export.candidate_id)
        .join(Search, Search.id == Export.search_id)
    )
    count = select(func.count()).select_from(Export)
    with store.session() as s:
        if search_id is not None:
            store.search(s, search_id)  # NotFoundError for an unknown search
            query = query.where(Export.search_id == search_id)
            count = count.where(Export.search_id == search_id)
        rows = s.execute(query.order_by(Export.id.desc()).offset(offset).limit(limit))
        return [_summary(*row) for row in rows], s.scalar(count) or 0


def export_info(store: Store, export_id: int) -> dict[str, Any]:
    """An export as JSON-able data: its status, phase, model card and files (name, format,
    bytes, SHA-256, whether it is still there), as recorded when it completed."""
    with store.session() as s:
        row = _export_row(s, export_id)
        trial = s.scalar(select(Candidate.trial).where(Candidate.id == row.candidate_id))
        name = s.scalar(select(Search.name).where(Search.id == row.search_id))
        return {**_summary(row, trial, name), "card": row.card or None, "out_dir": row.out_dir}


def export_file(store: Store, export_id: int, name: str) -> Path:
    """The path of one file of a completed export, by its name in the export's own file
    list (`export_info`): any other name, `../` included, is NotFoundError; a file deleted,
    moved or replaced (its SHA-256 differs) since the export wrote it is GoneError."""
    info = export_info(store, export_id)
    for entry in info["files"]:
        if entry["name"] != name:
            continue
        path = Path(info["out_dir"]) / entry["name"]
        if not path.is_file():
            raise GoneError(
                f"export {export_id}'s file {name!r} was deleted or moved since the export "
                "wrote it; export the candidate again"
            )
        if not entry["available"] or (entry["sha256"] and file_sha256(path) != entry["sha256"]):
            raise GoneError(
                f"export {export_id}'s file {name!r} was replaced since the export wrote it "
                "(its bytes differ; another export to the same folder?); export the "
                "candidate again"
            )
        return path
    known = [entry["name"] for entry in info["files"]]
    raise NotFoundError(f"export {export_id} has no file {name!r}; its files: {known}")
