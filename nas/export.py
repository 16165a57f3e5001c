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
from dataclasses import dataclass, field
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
from supernet.anycost.evaluate import load_gan, save_sample_grid
from supernet.artifacts import open_artifact
from supernet.data import resize
from supernet.mbconv.checkpoint import load_supernet

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


@dataclass
class PreparedModel:
    """What an export writes, whatever kind of network it is."""

    module: torch.nn.Module
    space: str
    example: torch.Tensor  # traced by the ONNX exporter
    check_inputs: torch.Tensor  # another batch size, to check the dynamic batch axis too
    input_name: str
    output_name: str
    card: dict[str, Any]
    extra_files: dict[str, Any] = field(default_factory=dict)  # name -> write(path) -> path


def _check_sha(path: str, sha: str, expected: str, search_id: int) -> None:
    if sha != expected:
        raise ExportError(
            f"{path} changed since search {search_id} ran (SHA-256 {sha[:12]}... != "
            f"{expected[:12]}...); export from the original file"
        )


def _prepare_classifier(
    path: str, sha: str, search_id: int, arch: dict, searched: dict
) -> PreparedModel:
    trained = load_supernet(path)
    _check_sha(path, trained.sha256, sha, search_id)
    data = trained.dataset()
    # Test first, validation last: the validation pass leaves the BN statistics in place.
    measured = {
        split: trained.evaluator(data, split=split).evaluate(arch).top1 for split in ("test", "val")
    }
    static = trained.net.extract(arch).eval().to(memory_format=torch.contiguous_format)
    sample = resize(data.normalize(data.val.images[:8]), arch["r"]).contiguous()
    space = trained.space
    card = {
        "input": {
            "shape": [1, space.config.in_channels, arch["r"], arch["r"]],
            "normalization": {"mean": list(data.mean), "std": list(data.std)},
            "classes": data.classes,
        },
        "accuracy": {
            "searched": {"top1": searched["top1"], "source": searched["source"]},
            "predicted_top1": searched["top1"] if searched["source"] == "predictor" else None,
            "measured_top1": {"val": measured["val"], "test": measured["test"]},
            "measured_in_search": searched["top1_measured"],
            "note": "measured with the supernet's weights after BatchNorm recalibration",
        },
    }
    return PreparedModel(
        static, space.name, sample, torch.cat([sample, sample[:3]]), "input", "logits", card
    )


def _prepare_generator(
    path: str, sha: str, search_id: int, arch: dict, searched: dict
) -> PreparedModel:
    trained = load_gan(path)
    _check_sha(path, trained.sha256, sha, search_id)
    space = trained.space
    result = trained.evaluator().evaluate(arch)
    static = trained.generator.extract(arch).eval()
    latents = torch.randn(8, space.config.z_dim, generator=torch.Generator().manual_seed(0))

    def grid(target: Path) -> Path:
        return save_sample_grid(trained.generator, space, target, archs=[("candidate", arch)])

    card = {
        "input": {"latent": [1, space.config.z_dim], "distribution": "standard normal"},
        "output": {
            "shape": [1, space.config.image_channels, arch["res"], arch["res"]],
            "range": "about [-1, 1]; fixed noise",
        },
        "quality": {
            "searched": {k: searched.get(k) for k in ("fid", "consistency")},
            "measured": result.to_dict(),
            "note": "domain FID in the in-project feature net's space (not Inception FID); "
            "consistency = MSE + perceptual distance to the full generator",
        },
    }
    return PreparedModel(
        static,
        space.name,
        latents,
        torch.cat([latents, latents[:3]]),
        "latent",
        "image",
        card,
        {"samples.png": grid},
    )


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
        search = store.search(s, search_id)
        row = s.scalar(
            select(Candidate).where(Candidate.search_id == search_id, Candidate.trial == candidate)
        )
        if row is None:
            raise NotFoundError(f"search {search_id} has no candidate {candidate}")
        costs: dict[str, dict[str, float]] = {}
        network: dict[str, float] = {}  # macs, params, and a generator's quality metrics
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
        searched = {
            "top1": row.top1,
            "source": row.top1_source,
            "top1_measured": row.top1_measured,
            **network,
        }

    kind = open_artifact(config.supernet).kind
    prepare = _prepare_generator if kind == "gan" else _prepare_classifier
    model = prepare(config.supernet, expected_sha, search_id, arch, searched)

    out = Path(out_dir or f"runs/exports/search{search_id}-candidate{candidate}")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    onnx_check = None
    for fmt in formats:
        path = out / FILE_NAMES[fmt]
        if fmt == "torchscript":
            torch.jit.script(model.module).save(str(path))
        elif fmt == "state_dict":
            state = {"space": model.space, "arch": arch, "state_dict": model.module.state_dict()}
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
        files[name] = write(out / name)

    card = {
        "search": {"id": search_id, "name": config.name, "candidate": candidate},
        "space": model.space,
        "kind": kind,
        "arch": arch,
        "arch_id": arch_id,
        "feasible": feasible,
        **model.card,
        "costs": costs,
        "limits": {d: t.limits for d, t in config.targets.items()},
        "macs": int(network.get("macs", 0)),
        "params": int(network.get("params", 0)),
        "checkpoint": {"path": str(config.supernet), "sha256": expected_sha},
        "predictor_sha256": predictor_sha,
        "files": {name: {"path": p.name, "sha256": _sha256(p)} for name, p in files.items()},
        "onnx_check": onnx_check,
        "rebuild": "supernet.build(supernet.get_space(card['space'])).extract(card['arch']) "
        "then load_state_dict(torch.load(model.state_dict.pt)['state_dict'])",
        "versions": _versions(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    card_path = out / "model_card.json"
    card_path.write_text(json.dumps(card, indent=2))
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
