"""Export a searched candidate as a standalone model with a card of its measured and
predicted figures.

The subnet is extracted from the supernet after BatchNorm recalibration (the statistics it
is evaluated with), then written as TorchScript, ONNX and/or a state_dict. The ONNX file is
run in onnxruntime and compared with torch before the export counts as done. The export is
recorded in SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nas import __version__
from nas.errors import ExportError, NotFoundError, UserError
from nas.pareto import load_config
from nas.search.lifecycle import driver_id, lease_holder
from nas.search.records import LeaseLost, heartbeat, lease_expiry, now
from nas.store import Candidate, Export, Metric, Store
from supernet.errors import CheckpointError
from supernet.family import ExportableModel, open_artifact

log = logging.getLogger(__name__)
FORMATS = ("torchscript", "onnx", "state_dict")
FILE_NAMES = {
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    "state_dict": "model.state_dict.pt",
}
ONNX_TOLERANCE = 1e-4
CARD_NAME = "model_card.json"
# an export's status; `nas export` writes a completed row, an API export is a job
QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
UNFINISHED_EXPORTS = (QUEUED, RUNNING)


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]
    card: dict[str, Any]
    export_id: int


def parse_formats(text: str | list[str]) -> list[str]:
    items = text if isinstance(text, list) else text.split(",")
    formats = [f.strip() for f in items if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown export format {bad or text!r}; allowed: {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def _versions() -> dict[str, str]:
    out = {"nas": __version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "onnxscript", "optuna", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _onnx_check(static: torch.nn.Module, path: Path, inputs: torch.Tensor) -> tuple[float, float]:
    """(max abs difference, its allowance): ONNX_TOLERANCE relative to the logits' scale,
    since float32 kernels that sum in another order differ in proportion to magnitude."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        expected = static(inputs).numpy()
    allowed = ONNX_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    return float(np.abs(got - expected).max()), allowed


def check_out_dir(out: Path, force: bool) -> None:
    """ExportError unless `out` can receive an export: absent, an empty folder, or (with
    `force`) a folder whose files may be replaced."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder (it is created if missing)")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(
            f"--out {out} already holds files; choose another folder or pass --force to "
            "replace them"
        )


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished export onto `out`. Into a folder that already holds files
    (allowed by --force), each file is renamed over its namesake; other files stay."""
    if out.is_dir() and any(out.iterdir()):
        for path in staging.iterdir():
            os.replace(path, out / path.name)
        staging.rmdir()
        return
    if out.is_dir():
        out.rmdir()
    os.replace(staging, out)


def _write_model_files(
    model: ExportableModel, arch: dict, formats: list[str], folder: Path
) -> tuple[dict[str, Path], dict[str, Any] | None]:
    """Write each format (and the family's extra files) into `folder`; the ONNX file is
    checked in onnxruntime against torch. Returns the files and the ONNX check."""
    files: dict[str, Path] = {}
    onnx_check = None
    for fmt in formats:
        path = folder / FILE_NAMES[fmt]
        if fmt == "torchscript":
            torch.jit.script(model.module).save(str(path))
        elif fmt == "state_dict":
            # a plain dict: torch.load(weights_only=True) reads no custom classes
            state = {
                "space": model.space,
                "arch": dict(arch),
                "state_dict": model.module.state_dict(),
            }
            torch.save(state, path)
        else:
            program = torch.onnx.export(
                model.module,
                (model.example,),
                dynamo=True,
                verbose=False,
                input_names=[model.input_name],
                output_names=[model.output_name],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
            program.save(str(path))
            diff, allowed = _onnx_check(model.module, path, model.check_inputs)
            if diff > allowed:
                raise ExportError(
                    f"onnxruntime and torch disagree on {path} (max abs difference {diff:.3g} "
                    f"> {allowed:.3g}); the ONNX file is not usable"
                )
            onnx_check = {
                "max_abs_diff": diff,
                "allowed": allowed,
                "rule": f"max abs diff <= {ONNX_TOLERANCE} x max(1, max |output|)",
                "runtime": "onnxruntime",
            }
        files[fmt] = path
    for name, write in model.extra_files.items():
        files[name] = write(folder / name)
    return files, onnx_check


def export_candidate(
    store: Store,
    search_id: int,
    candidate: int,
    formats: str | list[str] = "torchscript,onnx,state_dict",
    out_dir: str | Path | None = None,
    force: bool = False,
    job: tuple[int, str] | None = None,
) -> ExportResult:
    """Write candidate `candidate` (its number in `nas pareto`) of search `search_id`.

    The files are written into a temporary folder beside `out_dir` and renamed into place
    when all of them are written and checked: an interrupted export leaves nothing half
    written, and a folder that already holds files is replaced only with `force`. The
    export is recorded as a new row, or, for a `job` (export id, its worker's driver id),
    completes that queued row, if the worker still holds its lease."""
    formats = parse_formats(formats)
    out = Path(out_dir or f"runs/exports/search{search_id}-candidate{candidate}")
    check_out_dir(out, force)  # before any work: a bad --out must not cost an evaluation
    config = load_config(store, search_id)
    with store.session() as s:
        search = store.search(s, search_id)
        row = s.scalar(
            select(Candidate).where(Candidate.search_id == search_id, Candidate.trial == candidate)
        )
        if row is None:
            raise NotFoundError(f"search {search_id} has no candidate {candidate}")
        costs: dict[str, dict[str, float]] = {}
        network: dict[str, float] = {}  # macs, params and the quality metrics
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
    # the values the search recorded: quality (and "<metric>_measured" where verified),
    # macs, params, and where quality came from
    searched = {"source": source, **network}

    # the file the search ran with, or nothing: a replaced file gives another network
    try:
        opened = open_artifact(config.supernet, expected_sha)
    except CheckpointError as err:
        raise ExportError(f"cannot export from search {search_id}: {err}") from None
    trained = opened.trained()
    arch = opened.space.validate(arch)  # an SQL row: an edge
    model = trained.exportable(arch, searched)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # as a folder made with mkdir would be, not mkdtemp's 0700
    try:
        files, onnx_check = _write_model_files(model, arch, formats, staging)
        card = {
            "search": {"id": search_id, "name": config.name, "candidate": candidate},
            "space": model.space,
            "kind": opened.family.kind,
            "arch": dict(arch),
            "arch_id": arch_id,
            "feasible": feasible,
            **model.card,
            "costs": costs,
            "limits": {d: t.limits for d, t in config.targets.items()},
            "macs": int(network.get("macs", 0)),
            "params": int(network.get("params", 0)),
            "checkpoint": {"path": str(opened.path), "sha256": expected_sha},
            "predictor_sha256": predictor_sha,
            "files": {name: {"path": p.name, "sha256": _sha256(p)} for name, p in files.items()},
            "onnx_check": onnx_check,
            "rebuild": "supernet.build(supernet.get_space(card['space'])).extract(card['arch']) "
            "then load_state_dict(torch.load(model.state_dict.pt)['state_dict'])",
            "versions": _versions(),
            "created_at": datetime.now(UTC).isoformat(),
        }
        (staging / CARD_NAME).write_text(json.dumps(card, indent=2))
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {name: out / path.name for name, path in files.items()}
    with store.session() as s:
        if job is None:
            record = Export(
                search_id=search_id,
                candidate_id=candidate_id,
                formats=formats,
                out_dir=str(out),
                card=card,
                status=COMPLETED,
                finished_at=now(),
            )
            s.add(record)
            s.flush()
            export_id = record.id
        else:
            export_id, driver = job
            _hold_export(s, export_id, driver, status=COMPLETED, card=card, finished_at=now())
    log.info(
        "exported search %d candidate %d to %s (%s)", search_id, candidate, out, ", ".join(formats)
    )
    return ExportResult(out, files, card, export_id)


# ----- exports as jobs (the HTTP API) ---------------------------------------------------------
# An API export is a row queued by `queue_export`, then run by `run_export_job` in a worker
# process. The worker holds the row's lease (driver, lease_until) as a search's driver holds
# its search's: a restarted server runs an export whose worker died, and two workers (of two
# servers) cannot both run one.


def queue_export(
    store: Store, search_id: int, candidate: int, formats: str | Sequence[str], data_dir: Path
) -> int:
    """Record an export of a candidate to be run by a worker; returns its id. Its files go to
    `data_dir`/exports/ID. Bad formats and unknown searches or candidates are refused here,
    before any worker starts."""
    formats = parse_formats(formats if isinstance(formats, str) else list(formats))
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


def _hold_export(s: Session, export_id: int, driver: str, **values: object) -> None:
    """Renew `driver`'s lease on the export (setting `values` too); LeaseLost if another
    worker took the export over."""
    result = s.execute(
        update(Export)
        .where(Export.id == export_id, Export.driver == driver)
        .values(lease_until=lease_expiry(), **values)
    )
    if result.rowcount != 1:
        raise LeaseLost(f"export {export_id}: taken over by another worker; {driver} stops")


def claim_export(store: Store, export_id: int, driver: str) -> bool:
    """Make `driver` the export's worker if it is queued, or running under a lease nobody
    holds (its worker died): one compare-and-set on the driver seen, so that of two workers
    claiming at once one wins."""
    with store.session() as s:
        row = _export_row(s, export_id)
        if row.status not in UNFINISHED_EXPORTS:
            return False
        if row.status == RUNNING and lease_holder(row) is not None:
            return False
        seen_status, seen_driver = row.status, row.driver
    with store.session() as s:
        result = s.execute(
            update(Export)
            .where(
                Export.id == export_id,
                Export.status == seen_status,
                Export.driver == seen_driver,
            )
            .values(status=RUNNING, driver=driver, lease_until=lease_expiry(), message="")
        )
        return result.rowcount == 1


def run_export_job(store: Store, export_id: int) -> str:
    """Run a queued export (or one whose worker died); returns its status. An export another
    worker runs, or that has ended, is left alone."""
    driver = driver_id()
    if not claim_export(store, export_id, driver):
        with store.session() as s:
            return _export_row(s, export_id).status
    with store.session() as s:
        row = _export_row(s, export_id)
        trial = s.scalar(select(Candidate.trial).where(Candidate.id == row.candidate_id))
        search_id, formats, out_dir = row.search_id, list(row.formats), Path(row.out_dir)

    def renew() -> None:
        with store.session() as s:
            _hold_export(s, export_id, driver)

    try:
        with heartbeat(renew, f"export {export_id}"):
            # force: a worker that died may have left some of the files
            export_candidate(store, search_id, trial, formats, out_dir, True, (export_id, driver))
    except LeaseLost as err:
        log.warning("%s", err)
        with store.session() as s:
            return _export_row(s, export_id).status
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        log.error("export %d failed: %s", export_id, message)
        with store.session() as s:
            _hold_export(s, export_id, driver, status=FAILED, message=message, finished_at=now())
        return FAILED
    return COMPLETED


def _summary(row: Export, trial: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "search": row.search_id,
        "candidate": trial,
        "status": row.status,
        "message": row.message,
        "formats": list(row.formats),
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def list_exports(store: Store, search_id: int | None = None) -> list[dict[str, Any]]:
    """Exports (of one search, with `search_id`), newest first: status, not cards or files."""
    query = select(Export, Candidate.trial).join(Candidate, Candidate.id == Export.candidate_id)
    with store.session() as s:
        if search_id is not None:
            store.search(s, search_id)  # NotFoundError for an unknown search
            query = query.where(Export.search_id == search_id)
        return [_summary(row, trial) for row, trial in s.execute(query.order_by(Export.id.desc()))]


def export_info(store: Store, export_id: int) -> dict[str, Any]:
    """An export as JSON-able data: its status, model card and files (name, format, bytes,
    SHA-256). Only the files named by the card are listed, the card itself included."""
    with store.session() as s:
        row = _export_row(s, export_id)
        trial = s.scalar(select(Candidate.trial).where(Candidate.id == row.candidate_id))
        info = {**_summary(row, trial), "card": row.card or None}
        out_dir = Path(row.out_dir)
    files = []
    if info["status"] == COMPLETED:
        recorded = info["card"]["files"]  # format -> the file's name and SHA-256 when written
        for fmt, entry in [*recorded.items(), ("card", {"path": CARD_NAME})]:
            path = out_dir / entry["path"]
            if path.is_file():
                files.append(
                    {
                        "name": path.name,
                        "format": fmt,
                        "bytes": path.stat().st_size,
                        "sha256": entry.get("sha256") or _sha256(path),
                    }
                )
    info["files"] = files
    info["out_dir"] = str(out_dir)
    return info


def export_file(store: Store, export_id: int, name: str) -> Path:
    """The path of one file of a completed export, by its name in the export's own file
    list (`export_info`): any other name, `../` included, is NotFoundError."""
    info = export_info(store, export_id)
    for entry in info["files"]:
        if entry["name"] == name:
            return Path(info["out_dir"]) / entry["name"]
    known = [entry["name"] for entry in info["files"]]
    raise NotFoundError(f"export {export_id} has no file {name!r}; its files: {known}")
