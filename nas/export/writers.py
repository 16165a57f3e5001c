"""The format writers: each file written from the exportable module and checked in the
runtime that loads it against torch (the int8 file: its top-1 measured on the family's
splits), before an export counts as done."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import ExportError
from nas.export.c_array import write_c_array
from nas.export.formats import FILE_NAMES, TFLITE_FORMATS
from nas.export.quantize import (
    SCHEME,
    convert_float16,
    onnx_outputs,
    onnx_session,
    onnx_top1,
    quantize_int8,
    weight_bytes,
)
from nas.export.tflite import write_tflite
from supernet.family import (
    ExportableModel,
)

ONNX_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # relative to the output's scale: 16-bit weights and activations
# bfloat16 keeps 8 significant bits to float16's 11; rounding compounds over ~20 layers
BF16_TOLERANCE = 1e-1
BF16_OPSET = 22  # the first opset whose Conv, Gemm, BatchNorm... accept tensor(bfloat16)


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


def _save_through_python(path: Path, save: Callable[[Any, io.BytesIO], object], value: Any) -> None:
    """`save(value, file)` into memory, then the bytes written with Python's own file. Given
    a path, torch's C++ file writer aborts the whole process (std::terminate, no cleanup)
    when a write fails on a full disk; Python raises an OSError naming the cause."""
    buffer = io.BytesIO()
    save(value, buffer)
    path.write_bytes(buffer.getbuffer())


def write_model_files(
    model: ExportableModel,
    arch: dict,
    formats: list[str],
    folder: Path,
    calibration_images: int,
    for_mcu: bool = False,
    phase: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write each format (and the family's extra files) into `folder`, each checked in the
    runtime that loads it against torch. Returns the files and what the checks found (the
    card's `onnx_check`, `pt2_check`, `fp16_check`, `bf16_check`, `quantization`, `tflite`
    and `c_array`). `for_mcu`: the search targets a microcontroller, so the int8 flatbuffer
    must be integer end to end and run in TFLite Micro (`write_tflite`); so must the one a
    C array is made from, whatever the targets: it goes to a board. `phase` is told what
    is being done before each step ("writing onnx"), for a running export to show."""
    files: dict[str, Path] = {}
    checks: dict[str, Any] = {}
    fp32_onnx: Path | None = None
    if {"onnx", "onnx_fp16", "onnx_int8"} & set(formats):
        # the fp32 file the 16-bit and int8 files are made from (kept only if asked for)
        fp32_onnx = folder / FILE_NAMES["onnx"]
        phase("writing onnx")
        checks["onnx_check"] = write_onnx(model, fp32_onnx)
    for fmt in formats:
        path = folder / FILE_NAMES[fmt]
        if fmt in TFLITE_FORMATS or fmt == "c_array":
            continue  # below: the flatbuffers, converted from the .pt2 file, then the C array
        if fmt != "onnx":  # written above
            phase(
                "writing onnx_int8, measuring its top-1" if fmt == "onnx_int8" else f"writing {fmt}"
            )
        if fmt == "torchscript":
            _save_through_python(path, torch.jit.save, torch.jit.script(model.module))
        elif fmt == "state_dict":
            # a plain dict: torch.load(weights_only=True) reads no custom classes
            state = {
                "space": model.space,
                "arch": dict(arch),
                "state_dict": model.module.state_dict(),
            }
            _save_through_python(path, torch.save, state)
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
        to_board = for_mcu or "c_array" in formats
        phase("converting to TFLite" + (", checking in TFLite Micro" if to_board else ""))
        files.update(
            _write_tflite_files(model, formats, folder, files, checks, calibration_images, to_board)
        )
    if "c_array" in formats:  # parse_formats put tflite_int8 in formats, so TFLM has run it
        phase("writing c_array")
        written, checks["c_array"] = write_c_array(
            files["tflite_int8"], folder, checks["tflite"]["tflm"]
        )
        files.update(written)
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
    for_mcu: bool,
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
            model,
            pt2,
            wanted.get("tflite"),
            wanted.get("tflite_int8"),
            calibration_images,
            for_mcu,
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
    except OSError:
        raise  # a disk that cannot take the file: said by export_candidate, as for every file
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
    _save_through_python(path, torch.export.save, program)
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
