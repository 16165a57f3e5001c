"""The int8 flatbuffer in TensorFlow Lite Micro (`nas.export.tflm`): its arena recorded,
the smallest arena it runs in found, its outputs compared with LiteRT's (1 LSB the goal,
another class a failure), and the card's flags where the arena exceeds the device's SRAM
or the search's limit. The model here is a one-layer int8 classifier built with TFLite's
own schema, so these tests need neither the converter's environment nor a trained network."""

from __future__ import annotations

import re
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from tflite_micro import runtime

from nas.errors import ExportError
from nas.export.card import _tflm_arena
from nas.export.tflm import check_in_tflm, run_in_tflm

schema = runtime.schema_fb
INPUT_SCALE, INPUT_ZERO = 0.05, -3
WEIGHT_SCALE = 0.02
OUTPUT_SCALE, OUTPUT_ZERO = 0.1, 5


def _tensor(name: str, shape: list[int], kind: int, buffer: int, scale: float, zero: int):
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, kind, buffer
    tensor.quantization = schema.QuantizationParametersT()
    tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [zero]
    return tensor


def _buffer(values: np.ndarray | None) -> object:
    buffer = schema.BufferT()
    buffer.data = None if values is None else list(values.tobytes())
    return buffer


def int8_dense_model(path: Path, weights: np.ndarray, bias: np.ndarray) -> Path:
    """A .tflite file of one int8 FULLY_CONNECTED layer: int8 input (1, in), int8 weights
    (out, in), int32 bias, int8 output (1, out), per-tensor scales."""
    outputs, inputs = weights.shape
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    dense = schema.OperatorT()
    dense.opcodeIndex, dense.inputs, dense.outputs = 0, [0, 1, 2], [3]
    dense.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    dense.builtinOptions = schema.FullyConnectedOptionsT()
    graph = schema.SubGraphT()
    int8, int32 = schema.TensorType.INT8, schema.TensorType.INT32
    graph.tensors = [
        _tensor("input", [1, inputs], int8, 1, INPUT_SCALE, INPUT_ZERO),
        _tensor("weights", [outputs, inputs], int8, 2, WEIGHT_SCALE, 0),
        _tensor("bias", [outputs], int32, 3, INPUT_SCALE * WEIGHT_SCALE, 0),
        _tensor("output", [1, outputs], int8, 4, OUTPUT_SCALE, OUTPUT_ZERO),
    ]
    graph.inputs, graph.outputs, graph.operators = [0], [3], [dense]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    # buffer 0 is empty by convention; the input and output have no data
    model.buffers = [_buffer(None), _buffer(None), _buffer(weights), _buffer(bias), _buffer(None)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


def dense_in_numpy(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """What the layer computes, in float arithmetic rounded once: TFLite's integer
    requantization rounds within 1 LSB of it."""
    accumulated = (x.astype(np.int64) - INPUT_ZERO) @ weights.T.astype(np.int64) + bias
    scaled = np.round(accumulated * INPUT_SCALE * WEIGHT_SCALE / OUTPUT_SCALE) + OUTPUT_ZERO
    return np.clip(scaled, -128, 127).astype(np.int8)


@pytest.fixture
def dense(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, size=(4, 16)).astype(np.int8)
    bias = rng.integers(-2000, 2000, size=4).astype(np.int32)
    inputs = rng.integers(-128, 128, size=(50, 16)).astype(np.int8)
    path = int8_dense_model(tmp_path / "dense.int8.tflite", weights, bias)
    return path, inputs, dense_in_numpy(inputs, weights, bias)


def test_tflm_records_the_arena_and_the_smallest_one_the_file_runs_in(dense):
    path, inputs, expected = dense
    figures, outputs = run_in_tflm(path, inputs)
    arena = figures["arena_bytes"]
    assert arena["head"] > 0 and arena["tail"] > 0
    assert arena["head"] + arena["tail"] == arena["total"]
    parts = figures["allocations"]
    assert parts["NodeAndRegistration struct"]["count"] == 1  # one op
    assert parts["TfLiteEvalTensor data"]["count"] == 4  # one per tensor
    assert sum(p["bytes"] for p in parts.values()) <= arena["tail"]
    smallest = figures["min_arena_bytes"]
    assert smallest >= arena["total"]
    sample = inputs[:1]
    fits = runtime.Interpreter.from_file(str(path), arena_size=smallest)
    fits.set_input(sample, 0)
    fits.invoke()
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_file(str(path), arena_size=smallest - 1).invoke()
    assert outputs.dtype == np.int8 and outputs.shape == (50, 4)
    assert np.abs(outputs.astype(int) - expected.astype(int)).max() <= 1


def test_tflm_check_warns_beyond_one_lsb_and_fails_where_classes_differ(dense):
    path, inputs, expected = dense
    labels = expected.argmax(1)
    litert = {"reference": expected, "default": expected}
    entry = check_in_tflm(path, inputs, litert, labels, "val")
    agreement = entry["agreement_with_litert"]
    assert agreement["images"] == 50 and agreement["reference_kernels"]["max_abs_diff_lsb"] <= 1
    assert entry["top1"]["val"] >= 0.9  # TFLM picks the classes numpy does, but for ties
    assert entry["min_arena_bytes"] >= entry["arena_bytes"]["total"]
    assert "tflite-micro" in entry["runtime"] and "warning" not in entry

    # one output a few LSB away, its image's class unchanged: recorded, and a warning
    off = expected.astype(np.int16)
    image = 7
    second = np.argsort(off[image])[-2]  # not the top class: lowering it keeps the class
    off[image, second] -= 5
    entry = check_in_tflm(path, inputs, {"reference": off, "default": expected}, labels, "val")
    reference = entry["agreement_with_litert"]["reference_kernels"]
    assert 4 <= reference["max_abs_diff_lsb"] <= 6  # TFLM is within 1 of expected
    assert reference["within_allowed_fraction"] == pytest.approx(1 - 1 / off.size)
    assert reference["same_class_fraction"] >= 0.99
    assert re.fullmatch(
        r"TFLite Micro's outputs are up to [4-6] LSB from LiteRT's reference kernels' \(goal 1\)"
        r" on 0\.50% of the outputs of 50 val images; same class on 1\d\d\.0%",
        entry["warning"],
    ), entry["warning"]

    # another class on 2 of 50 images: TFLM runs the file differently
    swapped = expected.copy()
    swapped[:2] = swapped[:2, ::-1]
    with pytest.raises(ExportError, match=r"another class on 4\.0% of 50 val images"):
        check_in_tflm(path, inputs, {"reference": swapped, "default": expected}, labels, "val")


def test_a_file_tflm_cannot_run_is_an_export_error(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ExportError, match=r"TFLite Micro cannot run garbage\.tflite"):
        run_in_tflm(garbage, np.zeros((1, 16), np.int8))


def test_an_arena_over_the_devices_sram_or_the_limit_is_flagged():
    tflm = {
        "arena_bytes": {"head": 20_480, "tail": 61_440, "total": 81_920},
        "min_arena_bytes": 83_968,
    }
    entry, warnings = _tflm_arena(
        "stm32f746", 320, {"peak_sram_kb": 64}, {"peak_sram_kb": 7.9}, tflm
    )
    assert entry["shipped"] == 82 and entry["head_kb"] == 20 and entry["tail_kb"] == 60
    assert entry["total_kb"] == 80
    assert entry["predicted"] == 7.9 and entry["predicted_over_shipped"] == pytest.approx(0.0963)
    assert entry["min_arena_kb"] == 82 and not entry["over_sram"] and entry["over_limit"]
    assert len(warnings) == 1 and "over the search's peak_sram_kb limit of 64" in warnings[0]
    entry, warnings = _tflm_arena("tiny-mcu", 64, {}, {"peak_sram_kb": 7.9}, tflm)
    assert entry["over_sram"] and not entry["over_limit"] and entry["limit_kb"] is None
    assert warnings == [
        "tiny-mcu: TFLite Micro needs a 82.0 kB arena for the int8 flatbuffer, more than the "
        "device's 64 kB of SRAM"
    ]
