"""The model card: what an export records of its candidate (arch, measured and predicted
figures, the files and their checks, the runtime versions), and the MCU costs of the
shipped int8 files beside the cost model's predictions."""

from __future__ import annotations

import contextlib
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import latency_models as lm
from nas import __version__
from nas.export.candidate import StoredCandidate
from nas.export.formats import COMPANION_FILES, FORMATS
from nas.export.quantize import (
    weight_bytes,
)
from supernet.family import ExportableModel
from supernet.io import file_sha256
from supernet.space import SearchSpace, space_reference


def _versions() -> dict[str, str]:
    out = {"nas": __version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "onnxscript", "optuna", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def mcu_targets(config: Any) -> dict[str, Any]:
    """The search's targets that are microcontrollers: {device: its cost model}."""
    loaded = {device: lm.load_hardware(device) for device in config.targets}
    return {device: hw for device, hw in loaded.items() if hw.kind == "mcu"}


def _shipped_mcu_costs(
    files: dict[str, Path],
    config: Any,
    costs: dict[str, dict[str, float]],
    tflm: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[str]]:
    """For each MCU the search targeted: the costs of the int8 files themselves beside the
    cost model's prediction for the arch. The int8 ONNX file: flash is its stored tensors
    plus the runtime, peak SRAM the device model on the layers and tensor sizes read from
    it. The int8 flatbuffer (what TFLite Micro flashes, graph included): its bytes plus the
    runtime, and the arena TFLM recorded running it (`tflm`, from `write_tflite`) beside
    the predicted peak SRAM. Returns the entries and a warning for each device whose SRAM
    (or the search's peak_sram_kb limit) is smaller than that arena."""

    shipped: dict[str, Any] = {}
    warnings: list[str] = []
    spec = lm.spec_from_onnx(files["onnx_int8"], batch=1) if "onnx_int8" in files else None
    for device, hw in mcu_targets(config).items():
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
        if tflm is not None:
            entry["tflm_arena"], found = _tflm_arena(
                device, hw.sram_kb, config.targets[device].limits, predicted, tflm
            )
            warnings += found
        shipped[device] = entry
    return shipped, warnings


def _tflm_arena(
    device: str,
    sram_kb: float,
    limits: dict[str, Any],
    predicted: dict[str, float],
    tflm: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """TFLM's smallest working arena for the file (kB) beside the predicted peak SRAM, the
    device's SRAM and the search's limit, with a warning for each of those it exceeds."""
    arena = {where: size / 1024 for where, size in tflm["arena_bytes"].items()}
    needed_kb = tflm["min_arena_bytes"] / 1024
    limit_kb = limits.get("peak_sram_kb")
    entry = {
        **_beside(predicted.get("peak_sram_kb"), needed_kb),
        "head_kb": round(arena["head"], 3),
        "tail_kb": round(arena["tail"], 3),
        "total_kb": round(arena["total"], 3),
        "min_arena_kb": round(needed_kb, 3),
        "sram_kb": sram_kb,
        "over_sram": needed_kb > sram_kb,
        "limit_kb": limit_kb,
        "over_limit": limit_kb is not None and needed_kb > limit_kb,
        "how": "shipped: the smallest arena TFLite Micro runs the int8 flatbuffer in "
        "(min_arena_kb: its head and tail, as recorded, plus what its planner borrows "
        "while allocating, where that outgrows the head; total_kb is head + tail); "
        "over_sram and over_limit compare it",
    }
    warnings = []
    if entry["over_sram"]:
        warnings.append(
            f"{device}: TFLite Micro needs a {needed_kb:.1f} kB arena for the int8 flatbuffer, "
            f"more than the device's {sram_kb:g} kB of SRAM"
        )
    if entry["over_limit"]:
        warnings.append(
            f"{device}: TFLite Micro needs a {needed_kb:.1f} kB arena for the int8 flatbuffer, "
            f"over the search's peak_sram_kb limit of {limit_kb:g} (predicted "
            f"{predicted.get('peak_sram_kb', float('nan')):.1f} kB by the cost model)"
        )
    return entry, warnings


def _file_sizes(files: dict[str, Path]) -> dict[str, Any]:
    """Each format's bytes; a format written as several files (a C array with its header
    and harness) counts them all, and lists each one's size."""
    sizes: dict[str, Any] = {}
    for fmt, path in files.items():
        if fmt not in FORMATS:
            continue
        parts = [path, *(files[name] for name in COMPANION_FILES.get(fmt, {}) if name in files)]
        sizes[fmt] = {"bytes": sum(part.stat().st_size for part in parts)}
        if len(parts) > 1:
            sizes[fmt]["files"] = {part.name: part.stat().st_size for part in parts}
    return sizes


def _beside(predicted: float | None, shipped: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"predicted": predicted, "shipped": round(shipped, 3)}
    if predicted:
        entry["predicted_over_shipped"] = round(predicted / shipped, 4)
    return entry


def model_card(
    search_id: int,
    candidate: int,
    found: StoredCandidate,
    model: ExportableModel,
    files: dict[str, Path],
    checks: dict[str, Any],
    skipped: dict[str, str] | None,
    finetuned: dict[str, Any] | None,
) -> dict[str, Any]:
    """The card of an export: the candidate as searched, the family's part (input, output,
    measured quality), the files with their SHA-256 and checks, what each file costs to
    ship, and how to rebuild the network."""
    config, opened, arch, costs = found.config, found.opened, found.arch, found.costs
    trained = opened.trained()
    deployment = _file_sizes(files)
    deployment.update({fmt: {"skipped": why} for fmt, why in (skipped or {}).items()})
    warnings: list[str] = []
    if "onnx_int8" in files or "tflite_int8" in files:
        tflm = checks.get("tflite", {}).get("tflm")
        deployment["mcu"], warnings = _shipped_mcu_costs(files, config, costs, tflm)
        if tflm is not None and "warning" in tflm:
            warnings.append(tflm["warning"])
    card = {
        "search": {"id": search_id, "name": config.name, "candidate": candidate},
        "space": model.space,
        # a space that is not a preset: its definition, which get_space rebuilds it from
        **_space_definition(opened.space),
        "kind": opened.family.kind,
        "arch": dict(arch),
        "arch_id": found.arch_id,
        "feasible": found.feasible,
        **model.card,
        "costs": costs,
        "limits": {d: t.limits for d, t in config.targets.items()},
        **_intervals(found),
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
        "files": {name: {"path": p.name, "sha256": file_sha256(p)} for name, p in files.items()},
        **checks,
        "deployment": deployment,
        # what a user must know before flashing the files (`nas export` prints each)
        "warnings": warnings,
        "rebuild": "supernet.build(supernet.get_space(card.get('space_definition') or "
        "card['space'])).extract(card['arch']) "
        "then load_state_dict(torch.load(model.state_dict.pt)['state_dict'])",
        "versions": _versions(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    return card


def _intervals(found: StoredCandidate) -> dict[str, Any]:
    """Each predicted metric's prediction interval at the search's coverage (quality under
    "", as in the search's rows), and the limits that asked for confidence: met by `high`."""
    if not found.bounds:
        return {}
    config = found.config
    return {
        "intervals": {
            "coverage": config.coverage,
            "meaning": "two-sided prediction interval from the cost model's (or predictor's) "
            "held-out residuals: about this share of true values falls inside",
            "metrics": {
                device: {m: {"low": lo, "high": hi} for m, (lo, hi) in bounds.items()}
                for device, bounds in found.bounds.items()
            },
        },
        "confidence": {d: t.confidence for d, t in config.targets.items() if t.confidence},
    }


def _space_definition(space: SearchSpace) -> dict[str, Any]:
    reference = space_reference(space)
    return {"space_definition": reference} if isinstance(reference, dict) else {}
