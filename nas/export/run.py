"""Export a searched candidate: extract it, write its files and card into a staging folder
beside the destination, move them into place when every file checks out, and record the
export in SQL."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ExportError
from nas.export.candidate import finetuned_weights, load_candidate
from nas.export.card import mcu_targets, model_card
from nas.export.formats import parse_formats
from nas.export.writers import write_model_files
from nas.store import Export, Store, lease
from nas.store.lease import now
from nas.store.status import COMPLETED
from supernet.errors import CheckpointError
from supernet.quantization import DEFAULT_CALIBRATION_IMAGES

log = logging.getLogger(__name__)

CARD_NAME = "model_card.json"


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]
    card: dict[str, Any]
    export_id: int


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


def export_candidate(
    store: Store,
    search_id: int,
    candidate: int,
    formats: str | Sequence[str],
    out_dir: str | Path | None = None,
    force: bool = False,
    job: tuple[int, str] | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    weights: str | Path | None = None,
    skipped: dict[str, str] | None = None,
) -> ExportResult:
    """Write candidate `candidate` (its number in `nas pareto`) of search `search_id`.

    The files are written into a temporary folder beside `out_dir` and renamed into place
    when all of them are written and checked: an interrupted export leaves nothing half
    written, and a folder that already holds files is replaced only with `force`. The
    export is recorded as a new row, or, for a `job` (export id, its worker's driver id),
    completes that queued row, if the worker still holds its lease. `weights`: a file of
    fine-tuned weights for this candidate (`nas finetune`) instead of the supernet's.
    `formats`: as `resolve_formats` chose them; `skipped`: the defaults it left out, and why
    (written in the card)."""
    formats = parse_formats(formats)
    out = Path(out_dir or f"runs/exports/search{search_id}-candidate{candidate}")
    check_out_dir(out, force)  # before any work: a bad --out must not cost an evaluation
    found = load_candidate(store, search_id, candidate, "export")
    opened, arch = found.opened, found.arch
    # the values the search recorded: quality (and "<metric>_measured" where verified),
    # macs, params, and where quality came from
    searched = {"source": found.quality_source, **found.network}
    trained = opened.trained()
    finetuned = None
    if weights is not None:
        finetuned = finetuned_weights(weights, opened, found.arch_id)
    try:
        model = trained.exportable(arch, searched, finetuned)
    except CheckpointError as err:
        raise ExportError(
            f"cannot export candidate {candidate} of search {search_id}: {err}"
        ) from None

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # as a folder made with mkdir would be, not mkdtemp's 0700
    try:
        for_mcu = bool(mcu_targets(found.config))
        files, checks = write_model_files(
            model, arch, formats, staging, calibration_images, for_mcu
        )
        card = model_card(search_id, candidate, found, model, files, checks, skipped, finetuned)
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
                candidate_id=found.candidate_id,
                formats=formats,
                # absolute: a server or CLI started in another folder must find the files
                out_dir=str(out.resolve()),
                card=card,
                status=COMPLETED,
                finished_at=now(),
            )
            s.add(record)
            s.flush()
            export_id = record.id
        else:
            export_id, driver = job
            what = f"export {export_id}"
            lease.hold(
                s, Export, export_id, driver, what, status=COMPLETED, card=card, finished_at=now()
            )
    log.info(
        "exported search %d candidate %d to %s (%s)", search_id, candidate, out, ", ".join(formats)
    )
    return ExportResult(out, files, card, export_id)
