"""Deployable files of an exported subnet: int8 ONNX by static post-training quantization,
16-bit ONNX for GPUs, and the figures of the files themselves, measured in onnxruntime.

int8 is onnxruntime's own quantizer (no hand-written quantizer): BatchNorm folded into the
convolutions first (`quant_pre_process`), then `quantize_static` in QDQ format with
per-channel symmetric int8 weights and per-tensor int8 activations whose ranges are the
min/max over the calibration images (training images, never validation or test). QDQ files
run in onnxruntime with int8 kernels, and are what TensorRT and most converters read.

    path = quantize_int8(fp32_onnx, out, calibration_images)
    top1 = onnx_top1(path, images, labels)
    stored = weight_bytes(path)  # what the weights take in flash
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ExportError

log = logging.getLogger(__name__)
QUANTIZATIONS = ("int8",)
SCHEME = (
    "static post-training quantization (onnxruntime quantize_static, QDQ): BatchNorm folded; "
    "weights int8 per output channel, symmetric; activations int8 per tensor, min/max "
    "ranges over the calibration images"
)
_BATCH = 64


def quantize_int8(
    fp32: Path, out: Path, calibration: np.ndarray, activations: str = "int8"
) -> Path:
    """`fp32` (an ONNX file of one image input) quantized to int8 QDQ at `out`, calibrated
    on `calibration` (N, C, H, W float32, preprocessed as the model expects). ExportError
    naming the reason if onnxruntime cannot quantize it.

    `activations="uint8"` stores the same 256-level per-tensor grid as uint8 (zero point
    shifted by 128): onnxruntime's x86 kernels are fast for uint8 x int8 and slow for
    int8 x int8, but int8 is what MCU runtimes take. The export ships int8."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ExportError("int8 quantization needs calibration images; got none")
    input_name = _input_name(fp32)

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(_batches(calibration.astype(np.float32)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    prepared = out.with_name(out.stem + ".prepared.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Images(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[activations],
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    except (ExportError, OSError):
        raise  # a disk that cannot take the file: said by export_candidate, as for every file
    except Exception as err:  # onnxruntime raises many kinds for a model it cannot take
        raise ExportError(f"int8 quantization of {fp32.name} failed: {err}") from None
    finally:
        prepared.unlink(missing_ok=True)
        for leftover in out.parent.glob(out.stem + "*-inferred.onnx"):
            leftover.unlink(missing_ok=True)  # quantize_static's augmented copies
    return out


def convert_float16(fp32: Path, out: Path) -> Path:
    """`fp32` with its weights and activations in float16 (inputs and outputs stay float32,
    so callers feed the same tensors), for GPU runtimes."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = onnx.load(str(fp32))
        half = convert_float_to_float16(model, keep_io_types=True)
        onnx.save(half, str(out))
    except OSError:
        raise  # a disk that cannot take the file: said by export_candidate, as for every file
    except Exception as err:
        raise ExportError(f"float16 conversion of {fp32.name} failed: {err}") from None
    return out


def _input_name(path: Path) -> str:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ExportError(f"{path} is not a readable ONNX model: {err}") from None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ExportError(f"{path}: int8 export needs a model of one input, it has {inputs}")
    return inputs[0]


def _batches(images: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(images), _BATCH):
        yield images[start : start + _BATCH]


def onnx_session(path: Path, optimized: bool = True) -> Any:
    """An onnxruntime CPU session. `optimized=False` runs a QDQ file node by node, as float
    arithmetic (fake quantization) instead of with fused int8 kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ExportError(f"onnxruntime cannot load {path}: {err}") from None


def onnx_outputs(session: Any, images: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: batch})[0] for batch in _batches(images.astype(np.float32))]
    return np.concatenate(parts) if parts else np.zeros((0,))


def onnx_top1(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of the file in onnxruntime on preprocessed images."""
    logits = onnx_outputs(onnx_session(path), images)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def weight_bytes(path: Path) -> int:
    """Bytes of every stored tensor of an ONNX file (int8 weights, int32 biases, scales and
    zero points of a QDQ file): what its weights take in a device's flash."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer))
