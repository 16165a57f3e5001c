"""The C array a board builds (`nas.export.c_array`): model_data.cc holds the flatbuffer's
exact bytes, aligned, with their length; model_data.h declares what the .cc defines;
main.cc registers exactly the model's ops and sizes the arena from TFLM's measured need.
The flatbuffers here are small and real: a one-layer int8 classifier built with TFLite's
schema, and the float sine model that tflite-micro ships.

TFLM's C++ sources are not on this machine (neither the tflite-micro wheel nor Debian ships
them), so main.cc is read, not built; where g++ is installed the array is compiled, linked
and read back. Where NAS_TFLM_ROOT names a clone of tflite-micro in which `make -f
tensorflow/lite/micro/tools/make/Makefile microlite` has run, main.cc is also built with
the command its own opening comment gives, and run: it must print the class TFLM's Python
interpreter picks for the same input."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite_micro
from tflite_micro import runtime

from nas.errors import ExportError
from nas.export.c_array import (
    ARENA_MARGIN_MIN_BYTES,
    RESOLVER_METHODS,
    arena_bytes,
    model_ops,
    write_c_array,
)
from nas.export.card import _file_sizes
from nas.export.formats import parse_formats
from nas.export.tflm import run_in_tflm
from tests.nas.export.test_tflm import int8_dense_model

schema = runtime.schema_fb
SINE_MODEL = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
GXX = shutil.which("g++")
# a tflite-micro clone with TFLM's library built for this host (see the module's docstring)
TFLM_ROOT = os.environ.get("NAS_TFLM_ROOT")


def array_bytes(source: str) -> bytes:
    """The bytes model_data.cc's array initializer spells, parsed back from its hex."""
    body = re.search(r"g_model_data\[\] = \{(.*?)\};", source, re.S)
    assert body is not None, "no g_model_data initializer"
    return bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})\b", body.group(1)))


def declared(source: str) -> set[str]:
    """`type name` of each `extern` declaration in a header."""
    return {" ".join(m.split()) for m in re.findall(r"^extern (.+?)(?:\[\])?;", source, re.M)}


def defined(source: str) -> set[str]:
    """`type name` of each definition at file scope in model_data.cc (alignment dropped)."""
    found = re.findall(r"^(?:alignas\(\d+\) )?(const [a-z ]+ \w+)(?:\[\])? =", source, re.M)
    return {" ".join(m.split()) for m in found}


def resolver_of(harness: str) -> tuple[int, list[str]]:
    """main.cc's resolver size N and the Add methods it calls, in order."""
    size = re.search(r"constexpr int kOpCount = (\d+);", harness)
    assert size is not None and "MicroMutableOpResolver<kOpCount>" in harness
    return int(size.group(1)), re.findall(r"resolver\.(Add\w+)\(\)", harness)


def check_c_array(folder: Path, flatbuffer: bytes, ops: list[str]) -> int:
    """Assert the three files of a C array in `folder` are `flatbuffer` and a harness for
    `ops`; returns the harness's arena size."""
    source = (folder / "model_data.cc").read_text()
    header = (folder / "model_data.h").read_text()
    harness = (folder / "main.cc").read_text()
    assert array_bytes(source) == flatbuffer
    length = re.search(r"const unsigned int g_model_data_len = (\d+);", source)
    assert length is not None and int(length.group(1)) == len(flatbuffer)
    assert "alignas(16) const unsigned char g_model_data[]" in source
    assert (
        declared(header)
        == defined(source)
        == {
            "const unsigned char g_model_data",
            "const unsigned int g_model_data_len",
        }
    )
    assert '#include "model_data.h"' in source and '#include "model_data.h"' in harness
    # a // comment ending in a backslash would swallow the line after it
    assert not re.search(r"//[^\n]*\\\n", source + header + harness)
    size, methods = resolver_of(harness)
    assert size == len(ops) and methods == [RESOLVER_METHODS[op] for op in ops]
    arena = re.search(r"constexpr int kArenaBytes = (\d+);", harness)
    assert arena is not None and "alignas(16) uint8_t tensor_arena[kArenaBytes]" in harness
    if GXX:
        compiled = subprocess.run(
            [GXX, "-std=c++17", "-fsyntax-only", "model_data.cc"], cwd=folder, capture_output=True
        )
        assert compiled.returncode == 0, compiled.stderr.decode()
    return int(arena.group(1))


def run_harness(folder: Path) -> str:
    """Build main.cc and model_data.cc in `folder` with the g++ command main.cc's opening
    comment gives, against the TFLM library built in NAS_TFLM_ROOT, run it, and return what
    it printed."""
    assert TFLM_ROOT is not None and GXX is not None
    host = f"{platform.system().lower()}_{platform.machine()}"
    libraries = sorted(Path(TFLM_ROOT).glob(f"gen/{host}_*/lib/libtensorflow-microlite.a"))
    assert libraries, f"no TFLM library built for {host} under {TFLM_ROOT}"
    harness = (folder / "main.cc").read_text()
    written = re.search(r"^ +(g\+\+ -std=c\+\+17 .*?-o model)$", harness, re.M | re.S)
    assert written is not None, "main.cc gives no g++ command"
    command = re.sub(r"\\\n\s*", "", written.group(1)).split()
    command = [
        str(libraries[-1]) if "<...>" in word else word.replace("$TFLM", TFLM_ROOT)
        for word in command
    ]
    built = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(folder / "model")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout + ran.stderr


def top_class_in_tflm(flatbuffer: bytes) -> int:
    """The class TFLM's Python interpreter picks for the input zero-point image."""
    interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=8 * 1024 * 1024)
    given = interpreter.get_input_details(0)
    (zero_point,) = given["quantization_parameters"]["zero_points"]
    interpreter.set_input(np.full(given["shape"], zero_point, given["dtype"]), 0)
    interpreter.invoke()
    return int(interpreter.get_output(0).argmax())


def tflm_entry(path: Path, inputs: np.ndarray) -> dict:
    """The parts of the card's `tflite.tflm` the C array reads, as TFLM measures them."""
    figures, _ = run_in_tflm(path, inputs)
    return {"arena_bytes": figures["arena_bytes"], "min_arena_bytes": figures["min_arena_bytes"]}


@pytest.fixture
def int8_model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, size=(4, 16)).astype(np.int8)
    bias = rng.integers(-2000, 2000, size=4).astype(np.int32)
    return int8_dense_model(tmp_path / "dense.int8.tflite", weights, bias)


@pytest.mark.parametrize("which", ["int8 dense", "tflite-micro's sine"])
def test_the_array_is_the_flatbuffer_and_the_harness_runs_its_ops(which, int8_model, tmp_path):
    if which == "int8 dense":
        path, inputs = int8_model, np.zeros((1, 16), np.int8)
    else:
        path, inputs = SINE_MODEL, np.zeros((1, 1), np.float32)
    tflm = tflm_entry(path, inputs)
    out = tmp_path / "c"
    out.mkdir()
    files, entry = write_c_array(path, out, tflm)
    assert {key: p.name for key, p in files.items()} == {
        "c_array": "model_data.cc",
        "c_array_header": "model_data.h",
        "c_array_main": "main.cc",
    }
    flatbuffer = path.read_bytes()
    arena = check_c_array(out, flatbuffer, ["FULLY_CONNECTED"])
    assert entry["ops"] == ["FULLY_CONNECTED"]
    assert entry["resolver"] == "tflite::MicroMutableOpResolver<1>"
    assert entry["array_bytes"] == len(flatbuffer) and entry["made_from"] == path.name
    assert arena == entry["arena_bytes"] >= tflm["min_arena_bytes"] + ARENA_MARGIN_MIN_BYTES
    # the arena the harness gets runs the file in TFLM; the measured need alone is its floor
    fits = runtime.Interpreter.from_file(str(path), arena_size=arena)
    fits.set_input(inputs, 0)
    fits.invoke()
    harness = (out / "main.cc").read_text()
    assert f"TFLM's measured {entry['arena']['measured_bytes']} bytes" in harness
    assert "make -f tensorflow/lite/micro/tools/make/Makefile" in harness  # how to build


@pytest.mark.skipif(
    TFLM_ROOT is None or GXX is None, reason="NAS_TFLM_ROOT names no built TFLM (or no g++)"
)
def test_the_harness_builds_against_tflm_and_prints_tflms_top_class(int8_model, tmp_path):
    write_c_array(int8_model, tmp_path, tflm_entry(int8_model, np.zeros((1, 16), np.int8)))
    printed = run_harness(tmp_path)
    assert re.search(r"arena used: \d+ of \d+ bytes", printed)
    top = top_class_in_tflm(int8_model.read_bytes())
    assert re.search(rf"^top class {top} \(int8 score", printed, re.M), printed


@pytest.mark.skipif(GXX is None, reason="no g++ on this machine")
def test_the_compiled_array_reads_back_as_the_file_aligned(int8_model, tmp_path):
    """model_data.cc compiled and linked with a program that writes g_model_data out: the
    same bytes as the file, at a 16-byte aligned address (so the header's extern gives the
    const array external linkage, and alignas holds)."""
    measured = {"arena_bytes": {"total": 4096}, "min_arena_bytes": 4096}  # not read here
    write_c_array(int8_model, tmp_path, measured)
    (tmp_path / "dump.cc").write_text(
        '#include <cstdint>\n#include <cstdio>\n#include "model_data.h"\n'
        "int main(int, char** argv) {\n"
        '  std::FILE* out = std::fopen(argv[1], "wb");\n'
        "  std::fwrite(g_model_data, 1, g_model_data_len, out);\n"
        "  std::fclose(out);\n"
        "  return reinterpret_cast<std::uintptr_t>(g_model_data) % 16 == 0 ? 0 : 3;\n}\n"
    )
    build = [GXX, "-std=c++17", "dump.cc", "model_data.cc", "-o", "dump"]
    built = subprocess.run(build, cwd=tmp_path, capture_output=True)
    assert built.returncode == 0, built.stderr.decode()
    ran = subprocess.run([str(tmp_path / "dump"), str(tmp_path / "back.tflite")])
    assert ran.returncode == 0  # 3: misaligned
    assert (tmp_path / "back.tflite").read_bytes() == int8_model.read_bytes()


def flatbuffer_with_ops(codes: list[tuple[int, int, str | None]], used: list[int]) -> bytes:
    """A flatbuffer whose op code table is `codes` ((builtin_code, deprecated_builtin_code,
    custom_code) each) and whose one subgraph has an operator for each index in `used`; no
    tensors, as only the ops are read."""
    table = []
    for builtin, deprecated, custom in codes:
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, deprecated, 1
        code.customCode = custom
        table.append(code)
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs = [], [], []
    graph.operators = []
    for index in used:
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, [], []
        graph.operators.append(op)
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, table, [graph]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_the_ops_are_those_the_operators_use_by_either_code_field(tmp_path):
    ops = schema.BuiltinOperator
    greater = ops.PLACEHOLDER_FOR_GREATER_OP_CODES
    codes = [
        (ops.CONV_2D, ops.CONV_2D, None),
        (ops.HARD_SWISH, ops.HARD_SWISH, None),
        (ops.MEAN, ops.MEAN, None),  # in the table, but no operator runs it
        (0, ops.DEPTHWISE_CONV_2D, None),  # an older file: the deprecated byte only
        (ops.CUMSUM, greater, None),  # a code above 127: builtin_code only
    ]
    flatbuffer = flatbuffer_with_ops(codes, [0, 1, 3, 1, 4, 0])
    assert model_ops(flatbuffer) == ["CONV_2D", "CUMSUM", "DEPTHWISE_CONV_2D", "HARD_SWISH"]
    path = tmp_path / "ops.tflite"
    path.write_bytes(flatbuffer)
    tflm = {"arena_bytes": {"head": 6000, "tail": 4000, "total": 10_000}, "min_arena_bytes": 10_300}
    files, entry = write_c_array(path, tmp_path, tflm)
    size, methods = resolver_of(files["c_array_main"].read_text())
    assert size == 4
    assert methods == ["AddConv2D", "AddCumSum", "AddDepthwiseConv2D", "AddHardSwish"]
    assert entry["resolver"] == "tflite::MicroMutableOpResolver<4>"


def test_an_op_without_a_resolver_method_fails_with_its_name(tmp_path):
    ops = schema.BuiltinOperator
    flatbuffer = flatbuffer_with_ops(
        [(ops.CONV_2D, ops.CONV_2D, None), (ops.LSTM, ops.LSTM, None)],
        [0, 1],
    )
    path = tmp_path / "lookup.tflite"
    path.write_bytes(flatbuffer)
    tflm = {"arena_bytes": {"total": 1000}, "min_arena_bytes": 1000}
    with pytest.raises(ExportError, match=r"no TFLite Micro resolver method is known for LSTM;"):
        write_c_array(path, tmp_path, tflm)
    custom = flatbuffer_with_ops([(ops.CUSTOM, ops.CUSTOM, "MyFancyOp")], [0])
    with pytest.raises(ExportError, match=r"custom op 'MyFancyOp'"):
        model_ops(custom, "custom.tflite")
    with pytest.raises(ExportError, match=r"garbage\.tflite is not a TFLite flatbuffer"):
        model_ops(b"not a flatbuffer at all", "garbage.tflite")
    # nothing written for a model the harness cannot serve
    assert not {"model_data.cc", "model_data.h", "main.cc"} & {p.name for p in tmp_path.iterdir()}


def test_the_arena_is_the_measured_need_plus_a_margin():
    small = arena_bytes({"arena_bytes": {"total": 2000}, "min_arena_bytes": 2200})
    assert small == {"bytes": 3232, "measured_bytes": 2200, "margin_bytes": 1032}  # 1 kB min
    large = arena_bytes({"arena_bytes": {"total": 78_656}, "min_arena_bytes": 78_900})
    assert large["measured_bytes"] == 78_900 and large["bytes"] % 16 == 0
    assert 78_900 * 1.1 <= large["bytes"] < 78_900 * 1.1 + 16


def test_a_c_array_brings_the_int8_flatbuffer_it_is_made_from(tmp_path):
    assert parse_formats("c_array") == ["tflite_int8", "c_array"]
    assert parse_formats("onnx,c_array,tflite_int8") == ["onnx", "tflite_int8", "c_array"]
    assert parse_formats(["c_array", "c_array"]) == ["tflite_int8", "c_array"]
    # the card counts the format's three files, and lists each
    names = {
        "c_array": "model_data.cc",
        "c_array_header": "model_data.h",
        "c_array_main": "main.cc",
    }
    files = {key: tmp_path / name for key, name in names.items()}
    for size, path in enumerate(files.values(), start=10):
        path.write_bytes(b"x" * size)
    files["onnx"] = tmp_path / "model.onnx"
    files["onnx"].write_bytes(b"y" * 7)
    assert _file_sizes(files) == {
        "c_array": {
            "bytes": 33,
            "files": {"model_data.cc": 10, "model_data.h": 11, "main.cc": 12},
        },
        "onnx": {"bytes": 7},
    }
