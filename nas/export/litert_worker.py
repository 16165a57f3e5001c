"""Convert a torch.export `.pt2` file to TFLite flatbuffers with litert-torch, and run them.

This file runs as a script in the TFLite converter's own environment (`make tflite-env`,
or the Python named by NAS_TFLITE_PYTHON), not in the project's: litert-torch pins
pydantic and typing_extensions below what the service needs. So it imports nothing from
the project; `nas.export.tflite` writes a JSON request, runs `python litert_worker.py REQUEST
REPLY`, and reads the JSON reply from the file REPLY.

Request fields:
  pt2          the ExportedProgram to convert (float32 in, float32 out)
  input_shape  the static shape the flatbuffers take (batch 1: what TFLM and phones run)
  fp32, int8   where to write the float and the int8 flatbuffer (either may be null)
  check        .npy of inputs: the fp32 file's outputs against torch's, max abs difference
  calibration  .npy of training images for the int8 ranges (int8 only)
  splits       {name: [images.npy, labels.npy]}: top-1 of each file written, in LiteRT
  int8_reference  {split, inputs, outputs, outputs_default} or null: the int8 file's
               int8 inputs on that split's images, and its raw int8 outputs with LiteRT's
               reference kernels (the arithmetic TFLM's reference kernels implement) and
               with its default ones (optimized, XNNPACK), saved as .npy

The int8 file is full-integer: the float flatbuffer quantized by ai-edge-quantizer's static
int8 recipe (`static_wi8_ai8`), which covers every op these networks hold (convolutions,
HARD_SWISH, ADD, MUL, MEAN, pooling, the classifier), with int8 input and output. Its
scheme is the ONNX export's: per-channel symmetric int8 weights, per-tensor int8
activations whose ranges are the min/max over the calibration images, BatchNorm folded by
the float conversion. (litert-torch's own PT2E quantizer annotates convolutions, linear
layers and adds only, and left hard-swish and SE's ops in float.)
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _convert(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import litert_torch

    litert_torch.convert(module, (example,)).export(str(path))


def _quantize_int8(float_file: Path, calibration: np.ndarray, path: Path) -> None:
    """`float_file` quantized to full integer at `path`, its activation ranges observed on
    `calibration` (N, ...) fed one image at a time (the graph's batch is 1)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils
    from ai_edge_quantizer import quantizer, recipe

    signatures = Interpreter(model_path=str(float_file)).get_signature_list()
    (signature, names), *_ = signatures.items()
    (input_name,) = names["inputs"]
    int8 = quantizer.Quantizer(str(float_file))
    int8.load_quantization_recipe(recipe.static_wi8_ai8())
    feeds = [{input_name: image[None].astype(np.float32)} for image in calibration]
    ranges = int8.calibrate({signature: feeds})
    quantized = int8.quantize(ranges, enable_progress_report=False).quantized_model
    # Above 256 kB of weights the quantizer stores them past the flatbuffer, by offset;
    # TFLite Micro reads only buffers held inside it (it would plan those weights into its
    # arena as if they were activations), so every buffer is written back inline.
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(quantized))
    path.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class _Runner:
    """A LiteRT interpreter over one flatbuffer, fed one image at a time. The int8 file is
    integer end to end (int8 input and output, as TFLM runs it): images are quantized with
    the input's scale and zero point, and the outputs dequantized with the output's."""

    def __init__(self, path: Path, reference_kernels: bool = False) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # the default kernels (XNNPACK and optimized builtins) round int8 requantization
        # differently from the reference ones, by a few LSB after some fifty layers
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        self.interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def raw(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The file's own input and output tensors for `images` (int8 for the int8 file),
        one row each per image."""
        inputs = np.concatenate([_to(self.input, image[None]) for image in images])
        return inputs, self.run(inputs)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The output tensors for input tensors already in the file's input type."""
        outputs = []
        for row in inputs:
            self.interpreter.set_tensor(self.input["index"], row[None])
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self.output["index"]).copy())
        return np.concatenate(outputs)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return _from(self.output, self.raw(images)[1])

    def io(self) -> dict[str, str]:
        return {"input": self.input["dtype"].__name__, "output": self.output["dtype"].__name__}


def _float_ops(path: Path) -> dict[str, int]:
    """The ops of `path` that compute in float32 (by their first input), counted by kind:
    in the int8 file, what the quantizer left unquantized, run between DEQUANTIZE and
    QUANTIZE ops (an MCU runtime runs them in float, slowly)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # without the default delegate, which would replace the ops it takes by one node
    plain = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    plain.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in plain.get_tensor_details()}
    counts: dict[str, int] = {}
    for op in plain._get_ops_details():  # the interpreter's only op listing
        inputs = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] != "QUANTIZE" and inputs and dtypes.get(inputs[0]) == np.float32:
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def _to(detail: dict[str, Any], values: np.ndarray) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    quantized = np.round(values / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(detail["dtype"])


def _from(detail: dict[str, Any], values: np.ndarray) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


def main(request_path: str) -> dict[str, Any]:
    request = json.loads(Path(request_path).read_text())
    program = torch.export.load(request["pt2"])
    example = torch.zeros(request["input_shape"])
    reply: dict[str, Any] = {"versions": _versions(), "seconds": {}, "top1": {}, "bytes": {}}
    written: dict[str, Path] = {}
    # the int8 file is quantized from the float one: converted for the purpose if not asked
    float_file = Path(request["fp32"] or Path(request_path).with_name("float.tflite"))
    if request.get("fp32") or request.get("int8"):
        started = time.perf_counter()
        _convert(program.module(), example, float_file)
        reply["seconds"]["fp32"] = round(time.perf_counter() - started, 2)
    if request.get("fp32"):
        written["fp32"] = float_file
        check = np.load(request["check"])
        with torch.no_grad():
            expected = program.module()(torch.from_numpy(check)).numpy()
        got = _Runner(float_file)(check)
        reply["check"] = {
            "max_abs_diff": float(np.abs(got - expected).max()),
            "output_scale": float(np.abs(expected).max()),
        }
    if request.get("int8"):
        started = time.perf_counter()
        calibration = np.load(request["calibration"])
        _quantize_int8(float_file, calibration, Path(request["int8"]))
        reply["seconds"]["int8"] = round(time.perf_counter() - started, 2)
        reply["calibration_images"] = len(calibration)
        written["int8"] = Path(request["int8"])
    for precision, path in written.items():
        reply["bytes"][precision] = path.stat().st_size
        runner = _Runner(path)
        reply.setdefault("io", {})[precision] = runner.io()
        if precision == "int8":
            reply["float_ops"] = _float_ops(path)
        reply["top1"][precision] = {}
        reference = request.get("int8_reference") if precision == "int8" else None
        for split, (images, labels) in (request.get("splits") or {}).items():
            inputs, outputs = runner.raw(np.load(images))
            if reference and reference["split"] == split:
                np.save(reference["inputs"], inputs)
                np.save(reference["outputs_default"], outputs)
                np.save(reference["outputs"], _Runner(path, reference_kernels=True).run(inputs))
            logits = _from(runner.output, outputs)
            reply["top1"][precision][split] = float(np.mean(logits.argmax(1) == np.load(labels)))
    return reply


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torch"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


if __name__ == "__main__":
    # the reply goes to a file: the converters print progress on stdout
    Path(sys.argv[2]).write_text(json.dumps(main(sys.argv[1])))
