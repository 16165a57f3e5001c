"""Export a searched candidate as a standalone model with a card of its measured and
predicted figures.

The subnet is extracted from the supernet after BatchNorm recalibration (the statistics it
is evaluated with), or built with fine-tuned weights (`nas finetune`), then written in the
formats asked for: TorchScript, torch.export's .pt2, ONNX, a state_dict, and what devices
run: int8 ONNX (static quantization, nas.quantize), fp16 and bf16 ONNX. Every file is run in
a runtime that loads it and compared with torch (the int8 file: its top-1 measured) before the
export counts as done. By default an export writes the formats each of the search's targets
runs at its precision (`default_formats`). The export is recorded in SQL.
"""

from __future__ import annotations

import contextlib
import copy
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
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nas import __version__
from nas.errors import ExportError, LeaseLost, NotFoundError, UserError
from nas.pareto import load_config
from nas.quantize import (
    QUANTIZATIONS,
    SCHEME,
    convert_float16,
    onnx_outputs,
    onnx_session,
    onnx_top1,
    quantize_int8,
    weight_bytes,
)
from nas.store import Candidate, Export, Metric, Store, lease
from nas.store.lease import now
from nas.store.status import COMPLETED, EXPORT_UNFINISHED, FAILED, QUEUED, RUNNING
from nas.tflite import write_tflite
from supernet.errors import CheckpointError, ConfigError
from supernet.family import (
    ExportableModel,
    ModelFamily,
    OpenedArtifact,
    family_of_space,
    open_artifact,
)
from supernet.quantization import DEFAULT_CALIBRATION_IMAGES
from supernet.space import Arch, get_space

log = logging.getLogger(__name__)
FORMATS = (
    "torchscript",
    "onnx",
    "state_dict",
    "pt2",
    "onnx_fp16",
    "onnx_bf16",
    "onnx_int8",
    "tflite",
    "tflite_int8",
)
FILE_NAMES = {
    "torchscript": "model.torchscript.pt",  # deprecated in torch 2.13, kept while supported
    "onnx": "model.onnx",
    "state_dict": "model.state_dict.pt",
    "pt2": "model.pt2",  # torch.export's ExportedProgram
    "onnx_fp16": "model.fp16.onnx",  # for GPU runtimes
    "onnx_bf16": "model.bf16.onnx",  # for GPU runtimes (opset 22, where Conv takes bfloat16)
    "onnx_int8": "model.int8.onnx",  # static int8 QDQ: MCUs (via converters), CPUs, TensorRT
    "tflite": "model.tflite",  # LiteRT on phones (batch 1)
    "tflite_int8": "model.int8.tflite",  # full-integer: TFLite Micro on MCUs, phones' NPUs
}
ONNX_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # relative to the output's scale: 16-bit weights and activations
# bfloat16 keeps 8 significant bits to float16's 11; rounding compounds over ~20 layers
BF16_TOLERANCE = 1e-1
BF16_OPSET = 22  # the first opset whose Conv, Gemm, BatchNorm... accept tensor(bfloat16)
CARD_NAME = "model_card.json"


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]
    card: dict[str, Any]
    export_id: int


# what an export writes unless told otherwise, besides the file each target's precision runs
DEFAULT_FORMATS = ("torchscript", "pt2", "onnx", "state_dict")
TFLITE_FORMATS = {"tflite", "tflite_int8"}
PRECISION_FORMATS = {"int8": "onnx_int8", "fp16": "onnx_fp16", "bf16": "onnx_bf16"}


def default_formats(config: Any, family: ModelFamily) -> tuple[list[str], dict[str, str]]:
    """What an export of a search writes unless told otherwise: DEFAULT_FORMATS plus the file
    each of the search's targets runs at the precision it was costed at (int8 ONNX for an int8
    target, every MCU; fp16 or bf16 ONNX for a GPU costed at that precision). Returns the
    formats, and the defaults left out with why (int8 for a family that cannot quantize)."""
    import latency_models as lm

    formats = list(DEFAULT_FORMATS)
    for device, target in config.targets.items():
        precision = lm.load_hardware(device).check_options(target.options).get("precision")
        if precision in PRECISION_FORMATS:
            formats.append(PRECISION_FORMATS[precision])
    skipped: dict[str, str] = {}
    if not family.quantizes_int8 and "onnx_int8" in formats:
        formats.remove("onnx_int8")
        skipped["onnx_int8"] = (
            f"not written: the {family.kind} family has no labelled images to calibrate and "
            "measure an int8 file on"
        )
    return list(dict.fromkeys(formats)), skipped


def resolve_formats(
    config: Any,
    family: ModelFamily,
    formats: str | Sequence[str] | None = None,
    quantize: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The formats an export writes, the one rule of every door: those asked for (None: the
    search's `default_formats`), plus with `quantize="int8"` the int8 ONNX file, and the int8
    flatbuffer where `tflite` is asked for. Returns them with the defaults skipped and why."""
    skipped: dict[str, str] = {}
    if formats is None:
        chosen, skipped = default_formats(config, family)
    else:
        chosen = parse_formats(formats if isinstance(formats, str) else list(formats))
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ExportError(
                f"--quantize {quantize!r} is not supported; allowed: {', '.join(QUANTIZATIONS)}"
            )
        quantized = [f"onnx_{quantize}"] + [f"tflite_{quantize}"] * ("tflite" in chosen)
        chosen = list(dict.fromkeys([*chosen, *quantized]))
        skipped = {f: why for f, why in skipped.items() if f not in chosen}
    return chosen, skipped


def parse_formats(text: str | Sequence[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    if not all(isinstance(f, str) for f in items):
        raise ExportError(
            f"formats must be format names, got {items!r}; allowed: {', '.join(FORMATS)}"
        )
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


def _onnx_check(
    static: torch.nn.Module, path: Path, inputs: torch.Tensor, tolerance: float = ONNX_TOLERANCE
) -> tuple[float, float]:
    """(max abs difference, its allowance): `tolerance` relative to the outputs' scale,
    since kernels that sum in another order differ in proportion to magnitude."""
    got = onnx_outputs(onnx_session(path), inputs.numpy())
    with torch.no_grad():
        expected = static(inputs).numpy()
    allowed = tolerance * max(1.0, float(np.abs(expected).max()))
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
    model: ExportableModel, arch: dict, formats: list[str], folder: Path, calibration_images: int
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write each format (and the family's extra files) into `folder`, each checked in the
    runtime that loads it against torch. Returns the files and what the checks found (the
    card's `onnx_check`, `pt2_check`, `fp16_check`, `bf16_check` and `quantization`)."""
    files: dict[str, Path] = {}
    checks: dict[str, Any] = {}
    fp32_onnx: Path | None = None
    if {"onnx", "onnx_fp16", "onnx_int8"} & set(formats):
        # the fp32 file the 16-bit and int8 files are made from (kept only if asked for)
        fp32_onnx = folder / FILE_NAMES["onnx"]
        checks["onnx_check"] = write_onnx(model, fp32_onnx)
    for fmt in formats:
        path = folder / FILE_NAMES[fmt]
        if fmt in TFLITE_FORMATS:
            continue  # below: converted from the .pt2 file
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
        elif fmt == "pt2":
            checks["pt2_check"] = _write_pt2(model, path)
        elif fmt == "onnx_fp16":
            assert fp32_onnx is not None
            convert_float16(fp32_onnx, path)
            checks["fp16_check"] = _output_check(
                model, path, FP16_TOLERANCE, "float16 weights and activations"
            )
        elif fmt == "onnx_bf16":
            checks["bf16_check"] = write_onnx_bf16(model, path)
        elif fmt == "onnx_int8":
            assert fp32_onnx is not None
            checks["quantization"] = write_int8(model, fp32_onnx, path, calibration_images)
        files[fmt] = path
    if fp32_onnx is not None and "onnx" not in formats:
        fp32_onnx.unlink()
    if TFLITE_FORMATS & set(formats):
        files.update(_write_tflite_files(model, formats, folder, files, checks, calibration_images))
    for name, write in model.extra_files.items():
        files[name] = write(folder / name)
    return files, checks


def _write_tflite_files(
    model: ExportableModel,
    formats: list[str],
    folder: Path,
    files: dict[str, Path],
    checks: dict[str, Any],
    calibration_images: int,
) -> dict[str, Path]:
    """The TFLite flatbuffers asked for, converted from the .pt2 file (written for the
    purpose, checked, and removed after, unless it was asked for too)."""
    pt2 = files.get("pt2")
    if pt2 is None:
        pt2 = folder / ".for-tflite.pt2"
        _write_pt2(model, pt2)
    wanted = {fmt: folder / FILE_NAMES[fmt] for fmt in ("tflite", "tflite_int8") if fmt in formats}
    try:
        checks["tflite"] = write_tflite(
            model, pt2, wanted.get("tflite"), wanted.get("tflite_int8"), calibration_images
        )
    finally:
        if "pt2" not in files:
            pt2.unlink(missing_ok=True)
    return wanted


def write_onnx(model: ExportableModel, path: Path) -> dict[str, Any]:
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
    return _output_check(model, path, ONNX_TOLERANCE, "float32")


class _Bfloat16Module(torch.nn.Module):
    """`inner` in bfloat16 behind float32 inputs and outputs, as the fp16 file keeps its
    input and output types, so callers feed every ONNX file the same tensors."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).to(torch.bfloat16).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(torch.bfloat16)).float()


def write_onnx_bf16(model: ExportableModel, path: Path) -> dict[str, Any]:
    """The subnet with bfloat16 weights and activations, exported by torch at opset 22 and
    checked against the fp32 torch outputs. onnxruntime's CPU provider has no bfloat16
    kernels (GPU runtimes: TensorRT, ORT's CUDA provider), so the file is validated by
    onnx's full checker and run in onnx's reference evaluator."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        program = torch.onnx.export(
            _Bfloat16Module(model.module).eval(),
            (model.example,),
            dynamo=True,
            opset_version=BF16_OPSET,
            verbose=False,
            input_names=[model.input_name],
            output_names=[model.output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        program.save(str(path))
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        (got,) = ReferenceEvaluator(str(path)).run(
            None, {model.input_name: model.check_inputs.numpy()}
        )
    except Exception as err:  # the exporter and checker raise many kinds
        raise ExportError(f"bfloat16 ONNX export to {path.name} failed: {err}") from None
    with torch.no_grad():
        expected = model.module(model.check_inputs).numpy()
    diff = float(np.abs(got - expected).max())
    allowed = BF16_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    if diff > allowed:
        raise ExportError(
            f"the bfloat16 file {path.name} disagrees with torch's fp32 outputs (max abs "
            f"difference {diff:.3g} > {allowed:.3g}); the file is not usable"
        )
    return {
        "max_abs_diff": diff,
        "allowed": allowed,
        "rule": f"max abs diff <= {BF16_TOLERANCE} x max(1, max |output|)",
        "runtime": "onnx.reference (onnxruntime's CPU provider has no bfloat16 kernels)",
        "opset": BF16_OPSET,
    }


def _output_check(
    model: ExportableModel, path: Path, tolerance: float, what: str
) -> dict[str, Any]:
    """The file's outputs in onnxruntime against torch's on the check inputs; ExportError if
    they differ by more than `tolerance` x the outputs' scale."""
    diff, allowed = _onnx_check(model.module, path, model.check_inputs, tolerance)
    if diff > allowed:
        raise ExportError(
            f"onnxruntime and torch disagree on {path.name} ({what}: max abs difference "
            f"{diff:.3g} > {allowed:.3g}); the file is not usable"
        )
    return {
        "max_abs_diff": diff,
        "allowed": allowed,
        "rule": f"max abs diff <= {tolerance} x max(1, max |output|)",
        "runtime": "onnxruntime",
    }


def _write_pt2(model: ExportableModel, path: Path) -> dict[str, Any]:
    """torch.export's ExportedProgram (dynamic batch), reloaded and checked against torch."""
    program = torch.export.export(
        model.module.eval(),
        (model.example,),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        expected = model.module(model.check_inputs)
        got = loaded(model.check_inputs)
    diff = float((got - expected).abs().max())
    allowed = ONNX_TOLERANCE * max(1.0, float(expected.abs().max()))
    if diff > allowed:
        raise ExportError(f"the reloaded {path.name} disagrees with torch ({diff:.3g})")
    return {"max_abs_diff": diff, "allowed": allowed, "runtime": "torch.export.load"}


def write_int8(
    model: ExportableModel, fp32: Path, path: Path, calibration_images: int
) -> dict[str, Any]:
    """The int8 file, and top-1 of the float and int8 files measured in onnxruntime on the
    family's validation and test splits (not the torch model's: the files that ship)."""
    if model.labelled is None:
        raise ExportError(
            f"int8 export needs labelled images to calibrate and measure on; the "
            f"{model.space} family has none (int8 is for classifiers)"
        )
    if calibration_images < 1:
        raise ExportError(f"--calibration-images must be >= 1, got {calibration_images}")
    train, _ = model.labelled("train")
    calibration = train[:calibration_images].numpy()
    quantize_int8(fp32, path, calibration)
    top1: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    for split in ("val", "test"):
        images, labels = model.labelled(split)
        for precision, file in (("fp32", fp32), ("int8", path)):
            top1[precision][split] = onnx_top1(file, images.numpy(), labels.numpy())
    fp32_bytes, int8_bytes = weight_bytes(fp32), weight_bytes(path)
    return {
        "scheme": SCHEME,
        "calibration_images": len(calibration),
        "calibration_split": "train",
        "top1": top1,
        "top1_drop_points": {
            split: round(100 * (top1["fp32"][split] - top1["int8"][split]), 3)
            for split in ("val", "test")
        },
        "measured_in": "onnxruntime (CPUExecutionProvider), on the exported files",
        "weight_bytes": {"fp32": fp32_bytes, "int8": int8_bytes},
        "size_ratio": round(fp32_bytes / max(int8_bytes, 1), 3),
    }


def _shipped_mcu_costs(
    files: dict[str, Path], config: Any, costs: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """For each MCU the search targeted: the costs of the int8 files themselves beside the
    cost model's prediction for the arch. The int8 ONNX file: flash is its stored tensors
    plus the runtime, peak SRAM the device model on the layers and tensor sizes read from
    it. The int8 flatbuffer (what TFLite Micro flashes, graph included): its bytes plus the
    runtime."""
    import latency_models as lm

    shipped: dict[str, Any] = {}
    spec = lm.spec_from_onnx(files["onnx_int8"], batch=1) if "onnx_int8" in files else None
    for device in config.targets:
        hw = lm.load_hardware(device)
        if hw.kind != "mcu":
            continue
        predicted = costs.get(device, {})
        entry: dict[str, Any] = {}
        if spec is not None:
            graph = hw.predict(spec)
            flash = weight_bytes(files["onnx_int8"]) / 1024 + hw.runtime_flash_kb
            entry["flash_kb"] = _beside(predicted.get("flash_kb"), flash)
            entry["peak_sram_kb"] = _beside(predicted.get("peak_sram_kb"), graph["peak_sram_kb"])
            entry["how"] = (
                "flash: the int8 file's stored tensors plus the profile's runtime_flash_kb; "
                "peak SRAM: the profile's memory plan on the layers and tensor sizes read "
                "from the int8 file"
            )
        if "tflite_int8" in files:
            flatbuffer_kb = files["tflite_int8"].stat().st_size / 1024
            entry["flash_kb_tflite"] = _beside(
                predicted.get("flash_kb"), flatbuffer_kb + hw.runtime_flash_kb
            )
        shipped[device] = entry
    return shipped


def _beside(predicted: float | None, shipped: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"predicted": predicted, "shipped": round(shipped, 3)}
    if predicted:
        entry["predicted_over_shipped"] = round(predicted / shipped, 4)
    return entry


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
    )


def _finetuned_weights(path: str | Path, opened: OpenedArtifact, arch_id: str) -> dict[str, Any]:
    """A fine-tuned weights file (`nas finetune`) for this candidate, or ExportError."""
    try:
        return opened.family.require_finetuning().load(path, opened.sha256, arch_id)
    except (CheckpointError, ConfigError) as err:
        raise ExportError(f"cannot export with --weights {path}: {err}") from None


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
    config, opened, arch, costs = found.config, found.opened, found.arch, found.costs
    # the values the search recorded: quality (and "<metric>_measured" where verified),
    # macs, params, and where quality came from
    searched = {"source": found.quality_source, **found.network}
    trained = opened.trained()
    finetuned = None
    if weights is not None:
        finetuned = _finetuned_weights(weights, opened, found.arch_id)
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
        files, checks = _write_model_files(model, arch, formats, staging, calibration_images)
        deployment: dict[str, Any] = {
            fmt: {"bytes": path.stat().st_size} for fmt, path in files.items() if fmt in FORMATS
        }
        deployment.update({fmt: {"skipped": why} for fmt, why in (skipped or {}).items()})
        if "onnx_int8" in files or "tflite_int8" in files:
            deployment["mcu"] = _shipped_mcu_costs(files, config, costs)
        card = {
            "search": {"id": search_id, "name": config.name, "candidate": candidate},
            "space": model.space,
            "kind": opened.family.kind,
            "arch": dict(arch),
            "arch_id": found.arch_id,
            "feasible": found.feasible,
            **model.card,
            "costs": costs,
            "limits": {d: t.limits for d, t in config.targets.items()},
            "macs": int(found.network.get("macs", 0)),
            "params": int(found.network.get("params", 0)),
            "checkpoint": {
                "path": str(opened.path),
                "sha256": opened.sha256,
                # a supernet trained from other weights (`nas supernet finetune`) says whose
                "initialised_from": getattr(trained, "meta", {}).get("initialised_from"),
            },
            "predictor_sha256": found.predictor_sha256,
            "weights": {"from": "the supernet (inherited)"}
            if finetuned is None
            else {
                "from": "fine-tuned (nas finetune)",
                "path": finetuned["path"],
                "sha256": finetuned["sha256"],
                "finetune": finetuned.get("meta", {}),
            },
            "files": {name: {"path": p.name, "sha256": _sha256(p)} for name, p in files.items()},
            **checks,
            "deployment": deployment,
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
                candidate_id=found.candidate_id,
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


def search_family(store: Store, search_id: int) -> ModelFamily:
    """The model family of a search's trained file, known from its space (no file read)."""
    with store.session() as s:
        space = store.search(s, search_id).space
    return family_of_space(get_space(space))


def _export_row(s: Session, export_id: int) -> Export:
    row = s.get(Export, export_id)
    if row is None:
        raise NotFoundError(f"no export {export_id}")
    return row


def _hold_export(s: Session, export_id: int, driver: str, **values: object) -> None:
    """Renew `driver`'s lease on the export in this transaction (nas.store.lease.hold)."""
    lease.hold(s, Export, export_id, driver, f"export {export_id}", **values)


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

    renew = partial(lease.renew, store, Export, export_id, driver, f"export {export_id}")
    try:
        with lease.heartbeat(renew, f"export {export_id}"):
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
        "finished": row.status not in EXPORT_UNFINISHED,
        "message": row.message,
        "formats": list(row.formats),
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def list_exports(
    store: Store, search_id: int | None = None, offset: int = 0, limit: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """A page of exports (of one search, with `search_id`), newest first: status, not cards
    or files; and how many there are in all."""
    query = select(Export, Candidate.trial).join(Candidate, Candidate.id == Export.candidate_id)
    count = select(func.count()).select_from(Export)
    with store.session() as s:
        if search_id is not None:
            store.search(s, search_id)  # NotFoundError for an unknown search
            query = query.where(Export.search_id == search_id)
            count = count.where(Export.search_id == search_id)
        rows = s.execute(query.order_by(Export.id.desc()).offset(offset).limit(limit))
        return [_summary(row, trial) for row, trial in rows], s.scalar(count) or 0


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
