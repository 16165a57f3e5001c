"""Export a searched candidate: extract it, write its files and card into a staging folder
beside the destination, move them into place when every file checks out, and record the
export in SQL."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
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
from supernet.io import file_sha256
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


STAGING_MARK = ".partial-"


def staging_prefix(out: Path) -> str:
    """The name every staging folder of an export to `out` starts with (a random tail
    follows): for an export job, whose `out` is DATA_DIR/exports/ID, it carries the id."""
    return f".{out.name}{STAGING_MARK}"


def staging_folders(out: Path) -> list[Path]:
    """The staging folders of exports to `out` that exist now: beside it, and inside it where
    `out` is a mount point (see `_staging_parent`)."""
    prefix = staging_prefix(out)
    places = [out.parent, *([out] if out.is_dir() else [])]
    return [
        path
        for place in places
        if place.is_dir()
        for path in place.iterdir()
        if path.name.startswith(prefix) and path.is_dir()
    ]


def _mount_points() -> set[str]:
    """The mount points of this process's mount namespace (Linux), as paths; empty where
    /proc is not there."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    # the fifth field, with space, tab, newline and backslash written as octal escapes
    return {
        re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        for line in lines
    }


def _is_mount_point(folder: Path) -> bool:
    """Whether `folder` is a mount point; a bind mount of a folder of the same filesystem
    too, which os.path.ismount misses (its device number is its parent's)."""
    return os.path.ismount(folder) or str(folder.resolve()) in _mount_points()


def _staging_parent(out: Path) -> Path:
    """Where the staging folder goes: beside `out`, so that it is renamed onto `out` in one
    step; inside `out` where it is a mount point, which cannot be renamed over or removed
    (EBUSY) and takes no rename from another mount (EXDEV). Staged there, the files are
    also written on the filesystem that keeps them."""
    return out if out.is_dir() and _is_mount_point(out) else out.parent


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished export onto `out`, in one step where `out` is absent or an empty
    folder beside the staging folder. Into a folder that already holds files (allowed by
    --force), or a mount point the export was staged in, each file is renamed into it;
    should one rename fail, the files this export added are taken out again (files it
    replaced under --force stay replaced)."""
    if staging.parent == out or (out.is_dir() and any(out.iterdir())):
        added: list[Path] = []
        try:
            for path in list(staging.iterdir()):
                target = out / path.name
                existed = target.exists()
                os.replace(path, target)
                if not existed:
                    added.append(target)
        except BaseException:
            for target in added:
                target.unlink(missing_ok=True)
            raise
        staging.rmdir()
        return
    os.replace(staging, out)  # POSIX rename replaces an empty folder in the same step


def recorded_files(card: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Each file of an export in `folder` as the store records it: its name, format (the
    card's name for it; "card" for the card), bytes and SHA-256. Written by every door, so
    that any export's files can be listed, served, and told apart from files that replaced
    them since."""
    entries = [*card["files"].items(), ("card", {"path": CARD_NAME})]
    return [
        {
            "name": entry["path"],
            "format": fmt,
            "bytes": (folder / entry["path"]).stat().st_size,
            "sha256": entry.get("sha256") or file_sha256(folder / entry["path"]),
        }
        for fmt, entry in entries
    ]


def filesystem_error(err: OSError, out: Path, staging: Path | None = None) -> ExportError:
    """An OSError met while writing an export to `out` (a full disk, a read-only mount, no
    permission, a quota) as one line naming the cause and the path: the file it was writing
    where that is known (named as the path it would have had in `out`), else `out`."""
    cause = os.strerror(err.errno).lower() if err.errno else str(err)
    code = errno.errorcode.get(err.errno or 0)
    path = out
    named = Path(os.fsdecode(err.filename)) if err.filename is not None else None
    if staging is not None and named is not None and named.is_relative_to(staging):
        path = out / named.relative_to(staging)
    return ExportError(
        f"{cause}{f' ({code})' if code else ''} writing {path}; the export was not written"
    )


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
    phase: Callable[[str], None] = lambda _: None,
) -> ExportResult:
    """Write candidate `candidate` (its number in `nas pareto`) of search `search_id`.

    The files are written into a temporary folder beside `out_dir` (inside it, where it is
    a mount point) and renamed into place when all of them are written and checked: an
    interrupted export leaves nothing half written, a disk that cannot take the files (full,
    read-only, not ours) is an ExportError naming the cause and the path, and a folder that
    already holds files is replaced only with `force`. The export is recorded as a new
    row, or, for a `job` (export id, its worker's driver id), completes that queued row,
    if the worker still holds its lease. `weights`: a file of fine-tuned weights for this
    candidate (`nas finetune`) instead of the supernet's.
    `formats`: as `resolve_formats` chose them; `skipped`: the defaults it left out, and why
    (written in the card); `phase`: told what is being done before each step.
    Either way the row records the files written (`recorded_files`), and a new row's times
    are when this export started and ended."""
    started = now()
    formats = parse_formats(formats)
    out = Path(out_dir or f"runs/exports/search{search_id}-candidate{candidate}")
    try:
        check_out_dir(out, force)  # before any work: a bad --out must not cost an evaluation
    except OSError as err:  # a folder that cannot be read
        raise filesystem_error(err, out) from None
    phase("loading the candidate")
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

    staging: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(out), dir=_staging_parent(out)))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # as a folder made with mkdir would be, not mkdtemp's 0700
        for_mcu = bool(mcu_targets(found.config))
        files, checks = write_model_files(
            model, arch, formats, staging, calibration_images, for_mcu, phase
        )
        phase("writing the model card")
        card = model_card(search_id, candidate, found, model, files, checks, skipped, finetuned)
        (staging / CARD_NAME).write_text(json.dumps(card, indent=2))
        written = recorded_files(card, staging)
        _move_into_place(staging, out)
    except BaseException as err:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise filesystem_error(err, out, staging) from None
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
                files=written,
                status=COMPLETED,
                created_at=started,
                finished_at=now(),
            )
            s.add(record)
            s.flush()
            export_id = record.id
        else:
            export_id, driver = job
            what = f"export {export_id}"
            lease.hold(
                s,
                Export,
                export_id,
                driver,
                what,
                status=COMPLETED,
                card=card,
                files=written,
                phase="",
                finished_at=now(),
            )
    log.info(
        "exported search %d candidate %d to %s (%s)", search_id, candidate, out, ", ".join(formats)
    )
    return ExportResult(out, files, card, export_id)
