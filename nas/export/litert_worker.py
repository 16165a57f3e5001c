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

The int8 scheme is the ONNX export's: per-channel symmetric int8 weights, per-tensor int8
activations with ranges observed on the calibration images (PT2E with litert-torch's
quantizer), BatchNorm folded by the conversion.
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


def _convert(module: torch.nn.Module, example: torch.Tensor, path: Path, **kwargs: Any) -> None:
    import litert_torch

    litert_torch.convert(module, (example,), **kwargs).export(str(path))


def _quantized(
    program: torch.export.ExportedProgram, example: torch.Tensor, calibration: np.ndarray
) -> tuple[torch.nn.Module, Any]:
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    graph = torch.export.export(program.module(), (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in calibration:  # one at a time: the graph's batch is static
            prepared(torch.from_numpy(image[None]))
    return convert_pt2e(prepared, fold_quantize=False), quant_config.QuantConfig(
        pt2e_quantizer=quantizer
    )


class _Runner:
    """A LiteRT interpreter over one flatbuffer, fed one image at a time. The int8 file is
    integer end to end (int8 input and output, as TFLM runs it): images are quantized with
    the input's scale and zero point, and the outputs dequantized with the output's."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in images:
            self.interpreter.set_tensor(self.input["index"], _to(self.input, image[None]))
            self.interpreter.invoke()
            outputs.append(_from(self.output, self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(outputs)

    def io(self) -> dict[str, str]:
        return {"input": self.input["dtype"].__name__, "output": self.output["dtype"].__name__}


def _float_ops(path: Path) -> dict[str, int]:
    """The ops of `path` that compute in float32 (by their first input), counted by kind:
    in the int8 file, what litert-torch's quantizer left unquantized, run between
    DEQUANTIZE and QUANTIZE ops (an MCU runtime runs them in float, slowly)."""
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
    if request.get("fp32"):
        started = time.perf_counter()
        _convert(program.module(), example, Path(request["fp32"]))
        reply["seconds"]["fp32"] = round(time.perf_counter() - started, 2)
        written["fp32"] = Path(request["fp32"])
        check = np.load(request["check"])
        with torch.no_grad():
            expected = program.module()(torch.from_numpy(check)).numpy()
        got = _Runner(written["fp32"])(check)
        reply["check"] = {
            "max_abs_diff": float(np.abs(got - expected).max()),
            "output_scale": float(np.abs(expected).max()),
        }
    if request.get("int8"):
        started = time.perf_counter()
        calibration = np.load(request["calibration"])
        module, config = _quantized(program, example, calibration)
        _convert(module, example, Path(request["int8"]), quant_config=config)
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
        for split, (images, labels) in (request.get("splits") or {}).items():
            logits = runner(np.load(images))
            reply["top1"][precision][split] = float(np.mean(logits.argmax(1) == np.load(labels)))
    return reply


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("litert-torch", "ai-edge-litert", "torch", "torchao"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


if __name__ == "__main__":
    # the reply goes to a file: the converters print progress on stdout
    Path(sys.argv[2]).write_text(json.dumps(main(sys.argv[1])))
