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
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from nas import __version__
from nas.errors import ExportError, NotFoundError
from nas.pareto import load_config
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
) -> ExportResult:
    """Write candidate `candidate` (its number in `nas pareto`) of search `search_id`.

    The files are written into a temporary folder beside `out_dir` and renamed into place
    when all of them are written and checked: an interrupted export leaves nothing half
    written, and a folder that already holds files is replaced only with `force`."""
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
        (staging / "model_card.json").write_text(json.dumps(card, indent=2))
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {name: out / path.name for name, path in files.items()}
    with store.session() as s:
        record = Export(
            search_id=search_id,
            candidate_id=candidate_id,
            formats=formats,
            out_dir=str(out),
            card=card,
        )
        s.add(record)
        s.flush()
        export_id = record.id
    log.info(
        "exported search %d candidate %d to %s (%s)", search_id, candidate, out, ", ".join(formats)
    )
    return ExportResult(out, files, card, export_id)
