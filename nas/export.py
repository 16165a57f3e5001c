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
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from nas import __version__
from nas.pareto import load_config
from nas.store import Candidate, Export, Metric, Search, Store
from supernet.checkpoint import load_supernet
from supernet.data import resize

log = logging.getLogger(__name__)
FORMATS = ("torchscript", "onnx", "state_dict")
FILE_NAMES = {
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    "state_dict": "model.state_dict.pt",
}
ONNX_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An export that cannot be made or does not check out; the message says why."""


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


def export_candidate(
    store: Store,
    search_id: int,
    candidate: int,
    formats: str | list[str] = "torchscript,onnx,state_dict",
    out_dir: str | Path | None = None,
) -> ExportResult:
    """Write candidate `candidate` (its number in `nas pareto`) of search `search_id`."""
    formats = parse_formats(formats)
    config = load_config(store, search_id)
    with store.session() as s:
        search = s.get(Search, search_id)
        row = s.scalar(
            select(Candidate).where(Candidate.search_id == search_id, Candidate.trial == candidate)
        )
        if row is None:
            raise ExportError(f"search {search_id} has no candidate {candidate}")
        costs: dict[str, dict[str, float]] = {}
        for device, name, value in s.execute(
            select(Metric.device, Metric.name, Metric.value).where(Metric.candidate_id == row.id)
        ):
            if device:  # network metrics (macs, params) are in the card's top level
                costs.setdefault(device, {})[name] = value
        expected_sha = search.supernet.sha256
        predictor_sha = search.predictor.sha256 if search.predictor else None
        arch, arch_id, feasible = dict(row.arch), row.arch_id, row.feasible
        top1, top1_source, top1_measured = row.top1, row.top1_source, row.top1_measured

    trained = load_supernet(config.supernet)
    if trained.sha256 != expected_sha:
        raise ExportError(
            f"{config.supernet} changed since search {search_id} ran (SHA-256 "
            f"{trained.sha256[:12]}... != {expected_sha[:12]}...); export from the original file"
        )
    space = trained.space
    data = trained.dataset()
    # Test first, validation last: the validation pass leaves the BN statistics in place.
    measured = {
        split: trained.evaluator(data, split=split).evaluate(arch).top1 for split in ("test", "val")
    }
    static = trained.net.extract(arch).eval().to(memory_format=torch.contiguous_format)

    out = Path(out_dir or f"runs/exports/search{search_id}-candidate{candidate}")
    out.mkdir(parents=True, exist_ok=True)
    r = arch["r"]
    sample = resize(data.normalize(data.val.images[:8]), r).contiguous()
    files: dict[str, Path] = {}
    onnx_diff = allowed = None
    for fmt in formats:
        path = out / FILE_NAMES[fmt]
        if fmt == "torchscript":
            torch.jit.script(static).save(str(path))
        elif fmt == "state_dict":
            torch.save({"space": space.name, "arch": arch, "state_dict": static.state_dict()}, path)
        else:
            program = torch.onnx.export(
                static,
                (sample,),
                dynamo=True,
                verbose=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
            program.save(str(path))
            onnx_diff, allowed = _onnx_check(static, path, torch.cat([sample, sample[:3]]))
            if onnx_diff > allowed:
                raise ExportError(
                    f"onnxruntime and torch disagree on {path} (max abs difference {onnx_diff:.3g} "
                    f"> {allowed:.3g}); the ONNX file is not usable"
                )
        files[fmt] = path

    spec = space.to_spec(arch)
    card = {
        "search": {"id": search_id, "name": config.name, "candidate": candidate},
        "space": space.name,
        "arch": arch,
        "arch_id": arch_id,
        "feasible": feasible,
        "input": {
            "shape": [1, space.config.in_channels, r, r],
            "normalization": {"mean": list(data.mean), "std": list(data.std)},
            "classes": data.classes,
        },
        "accuracy": {
            "searched": {"top1": top1, "source": top1_source},
            "predicted_top1": top1 if top1_source == "predictor" else None,
            "measured_top1": {"val": measured["val"], "test": measured["test"]},
            "measured_in_search": top1_measured,
            "note": "measured with the supernet's weights after BatchNorm recalibration",
        },
        "costs": costs,
        "limits": {d: t.limits for d, t in config.targets.items()},
        "macs": spec.macs,
        "params": spec.params,
        "checkpoint": {"path": str(config.supernet), "sha256": trained.sha256},
        "predictor_sha256": predictor_sha,
        "files": {fmt: {"path": p.name, "sha256": _sha256(p)} for fmt, p in files.items()},
        "onnx_check": None
        if onnx_diff is None
        else {
            "max_abs_diff": onnx_diff,
            "allowed": allowed,
            "rule": f"max abs diff <= {ONNX_TOLERANCE} x max(1, max |logit|)",
            "runtime": "onnxruntime",
        },
        "rebuild": "supernet.build(supernet.get_space(card['space'])).extract(card['arch']) "
        "then load_state_dict(torch.load(model.state_dict.pt)['state_dict'])",
        "versions": _versions(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    card_path = out / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2))
    with store.session() as s:
        record = Export(
            search_id=search_id, candidate_id=row.id, formats=formats, out_dir=str(out), card=card
        )
        s.add(record)
        s.flush()
        export_id = record.id
    log.info(
        "exported search %d candidate %d to %s (%s)", search_id, candidate, out, ", ".join(formats)
    )
    return ExportResult(out, files, card, export_id)
