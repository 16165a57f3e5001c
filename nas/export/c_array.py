"""The int8 flatbuffer as C++ sources a board builds with TensorFlow Lite Micro.

`--format c_array` is made from the fully-int8 flatbuffer (`tflite_int8`, which it
implies) after TFLM has run it (`nas.export.tflm`), and writes three files:

- `model_data.cc`: the flatbuffer's bytes as `alignas(16) const unsigned char
  g_model_data[]`, and their count as `g_model_data_len`. TFLM reads the flatbuffer in
  place, weights included, and the converter aligns each buffer within the file, so the
  array's start must be aligned for them to be aligned in memory.
- `model_data.h`: the declarations of both.
- `main.cc`: a harness that registers exactly the model's ops in a
  `tflite::MicroMutableOpResolver<N>`, gives the interpreter an arena of TFLM's measured
  need plus a stated margin, runs one inference on the input zero-point image (an image of
  zeros in real values) and prints the top class. Its opening comment says how to build it.

    files, entry = write_c_array(Path("model.int8.tflite"), folder, card["tflite"]["tflm"])
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from nas.errors import ExportError
from nas.export.formats import COMPANION_FILES, FILE_NAMES

ARRAY_NAME = "g_model_data"
LENGTH_NAME = "g_model_data_len"
ARRAY_ALIGNMENT = 16  # bytes; the arena gets the same (TFLM aligns tensors within it to 16)
BYTES_PER_LINE = 12  # 12 x "0x00, " fits 80 columns with the indent
# The arena: TFLM's measured need plus this margin. The need was measured with TFLM's
# reference kernels; a board's optimized kernels (CMSIS-NN's) ask for scratch buffers of
# their own, and main.cc prints what the arena really used, for trimming.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_MIN_BYTES = 1024

# TFLM's MicroMutableOpResolver method that registers each builtin op: every one in
# tflite-micro's micro_mutable_op_resolver.h (2026). Most are the op's name in camel case,
# but not all (PADV2, CUMSUM, BATCH_MATMUL), so each is listed, and an op missing here
# fails the export rather than a board's build.
RESOLVER_METHODS = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQUEEZE": "AddSqueeze",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}


def model_ops(flatbuffer: bytes, name: str = "the flatbuffer") -> list[str]:
    """The builtin ops `flatbuffer` runs (each once, sorted), read with TFLM's own schema
    reader from its operators, not its op code table (which may list codes no operator
    uses). ExportError for a file that is not a TFLite flatbuffer, and for a custom op
    (no resolver method registers one without its kernel)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    if flatbuffer[4:8] != b"TFL3":  # the file identifier every TFLite flatbuffer carries
        raise ExportError(f"{name} is not a TFLite flatbuffer (no TFL3 identifier)")
    op_names = {code: op for op, code in vars(schema.BuiltinOperator).items() if op.isupper()}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    used = set()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        used.update(graph.Operators(o).OpcodeIndex() for o in range(graph.OperatorsLength()))
    ops = set()
    for index in used:
        code = model.OperatorCodes(index)
        # codes above 127 live in builtin_code; older files hold theirs in the deprecated
        # byte only, with builtin_code 0: the larger of the two is the op
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = (code.CustomCode() or b"").decode(errors="replace")
            raise ExportError(
                f"{name} uses the custom op {custom!r}; the C harness registers builtin ops only"
            )
        ops.add(op_names.get(builtin, f"builtin op #{builtin}"))
    return sorted(ops)


def resolver_methods(ops: list[str]) -> list[str]:
    """The MicroMutableOpResolver method that registers each of `ops`, in order; ExportError
    naming the ops that have none known."""
    unknown = [op for op in ops if op not in RESOLVER_METHODS]
    if unknown:
        raise ExportError(
            f"no TFLite Micro resolver method is known for {', '.join(unknown)}; the C "
            "harness cannot register the model's ops"
        )
    return [RESOLVER_METHODS[op] for op in ops]


def arena_bytes(tflm: dict[str, Any]) -> dict[str, int]:
    """The harness's arena from TFLM's run of the file (the card's `tflite.tflm`): its
    measured need (the smallest arena it ran in, never below its recorded head + tail),
    plus ARENA_MARGIN_FRACTION of it (at least ARENA_MARGIN_MIN_BYTES), rounded up to
    ARRAY_ALIGNMENT."""
    measured = max(tflm["arena_bytes"]["total"], tflm["min_arena_bytes"])
    margin = max(ARENA_MARGIN_MIN_BYTES, math.ceil(ARENA_MARGIN_FRACTION * measured))
    size = math.ceil((measured + margin) / ARRAY_ALIGNMENT) * ARRAY_ALIGNMENT
    return {"bytes": size, "measured_bytes": measured, "margin_bytes": size - measured}


def array_source(flatbuffer: bytes, header: str, origin: str) -> str:
    """model_data.cc: `flatbuffer` as the aligned array and its length."""
    lines = [
        ", ".join(f"0x{byte:02x}" for byte in flatbuffer[start : start + BYTES_PER_LINE])
        for start in range(0, len(flatbuffer), BYTES_PER_LINE)
    ]
    body = ",\n".join(f"    {line}" for line in lines)
    # the header comes first: its `extern` gives the const array external linkage
    return (
        f"// {origin}, as C++ data for TensorFlow Lite Micro (written by `nas export`).\n"
        f'#include "{header}"\n\n'
        f"alignas({ARRAY_ALIGNMENT}) const unsigned char {ARRAY_NAME}[] = {{\n{body}\n}};\n"
        f"const unsigned int {LENGTH_NAME} = {len(flatbuffer)};\n"
    )


def header_source(header: str, origin: str) -> str:
    """model_data.h: the declarations of the array and its length."""
    guard = "NAS_" + header.upper().replace(".", "_").replace("-", "_") + "_"
    return (
        f"// {origin}, as C++ data for TensorFlow Lite Micro (written by `nas export`).\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"// The flatbuffer, {ARRAY_ALIGNMENT}-byte aligned: TFLM reads its weights in place.\n"
        f"extern const unsigned char {ARRAY_NAME}[];\n"
        f"extern const unsigned int {LENGTH_NAME};\n\n"
        f"#endif  // {guard}\n"
    )


_HARNESS = """\
/* One inference of {origin} with TensorFlow Lite Micro (TFLM), written by `nas export`:
   the input zero-point image (zeros in real values) in, the top class printed.

   Build, from a clone of https://github.com/tensorflow/tflite-micro ($TFLM below):
   1. TFLM as a library, for a PC (reference kernels):
        make -f tensorflow/lite/micro/tools/make/Makefile microlite
      or for a board, e.g. a Cortex-M7 with CMSIS-NN's optimized kernels:
        make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_generic \\
          TARGET_ARCH=cortex-m7 OPTIMIZED_KERNEL_DIR=cmsis_nn microlite
      It lands in $TFLM/gen/<target>_<arch>_<build>/lib/libtensorflow-microlite.a.
   2. This folder's main.cc and model_data.cc against it, with the flags TFLM is built
      with (a board: its cross compiler and -mcpu/-mthumb flags, its startup code):
        g++ -std=c++17 -O2 -DTF_LITE_STATIC_MEMORY -fno-rtti -fno-exceptions \\
          -fno-threadsafe-statics -I$TFLM \\
          -I$TFLM/tensorflow/lite/micro/tools/make/downloads/flatbuffers/include \\
          -I$TFLM/tensorflow/lite/micro/tools/make/downloads/gemmlowp \\
          main.cc model_data.cc $TFLM/gen/<...>/lib/libtensorflow-microlite.a -o model
   For an IDE, tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py copies
   the same sources (with the same TARGET options) into one folder to add to a project.
   MicroPrintf writes through DebugLog(), which TFLM implements per target.

   Ops, read from the flatbuffer ({op_count}):
{op_list}
   Arena: {arena} bytes = TFLM's measured {measured} bytes (tflite-micro's reference
   kernels, recorded in model_card.json) + {margin} bytes of margin for other kernels'
   scratch buffers; the line "arena used" shows what this build needs.
*/

#include <cstdint>

#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {{

constexpr int kOpCount = {op_count};
constexpr int kArenaBytes = {arena};
alignas({alignment}) uint8_t tensor_arena[kArenaBytes];

// Exactly the model's ops: a resolver holds only the kernels it registers.
TfLiteStatus RegisterOps(tflite::MicroMutableOpResolver<kOpCount>& resolver) {{
{registrations}
  return kTfLiteOk;
}}

}}  // namespace

int main() {{
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel({array});
  if (model->version() != TFLITE_SCHEMA_VERSION) {{
    MicroPrintf("model schema %d, this TFLM reads %d", static_cast<int>(model->version()),
                TFLITE_SCHEMA_VERSION);
    return 1;
  }}
  tflite::MicroMutableOpResolver<kOpCount> resolver;
  if (RegisterOps(resolver) != kTfLiteOk) {{
    MicroPrintf("registering the model's ops failed");
    return 1;
  }}
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaBytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) {{
    MicroPrintf("AllocateTensors failed in an arena of %d bytes: TFLM's lines above say why",
                kArenaBytes);
    return 1;
  }}
  MicroPrintf("arena used: %u of %d bytes", static_cast<unsigned>(interpreter.arena_used_bytes()),
              kArenaBytes);

  TfLiteTensor* input = interpreter.input(0);
  if (input->type != kTfLiteInt8) {{
    MicroPrintf("expected an int8 input, got type %d", static_cast<int>(input->type));
    return 1;
  }}
  // a real value of 0 is the zero point in the input's quantization
  const int8_t zero = static_cast<int8_t>(input->params.zero_point);
  for (size_t i = 0; i < input->bytes; ++i) input->data.int8[i] = zero;

  if (interpreter.Invoke() != kTfLiteOk) {{
    MicroPrintf("Invoke failed");
    return 1;
  }}
  const TfLiteTensor* output = interpreter.output(0);
  if (output->type != kTfLiteInt8) {{
    MicroPrintf("expected an int8 output, got type %d", static_cast<int>(output->type));
    return 1;
  }}
  size_t top = 0;
  for (size_t i = 1; i < output->bytes; ++i) {{
    if (output->data.int8[i] > output->data.int8[top]) top = i;
  }}
  MicroPrintf("top class %u (int8 score %d, zero point %d)", static_cast<unsigned>(top),
              output->data.int8[top], static_cast<int>(output->params.zero_point));
  return 0;
}}
"""


def harness_source(ops: list[str], methods: list[str], arena: dict[str, int], origin: str) -> str:
    """main.cc: the TFLM harness that registers `ops` (by `methods`, `resolver_methods`)
    and runs one inference."""
    registrations = "\n".join(
        f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;" for method in methods
    )
    return _HARNESS.format(
        origin=origin,
        op_list="\n".join(
            textwrap.wrap(", ".join(ops), 88, initial_indent="     ", subsequent_indent="     ")
        ),
        op_count=len(ops),
        arena=arena["bytes"],
        measured=arena["measured_bytes"],
        margin=arena["margin_bytes"],
        alignment=ARRAY_ALIGNMENT,
        registrations=registrations,
        array=ARRAY_NAME,
    )


def write_c_array(
    flatbuffer_path: Path, folder: Path, tflm: dict[str, Any]
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write model_data.cc, model_data.h and main.cc into `folder` from the int8 flatbuffer
    at `flatbuffer_path`, with the arena sized from `tflm` (the card's `tflite.tflm`: TFLM's
    run of that file). Returns the files by their card names and the card's `c_array`."""
    flatbuffer = flatbuffer_path.read_bytes()
    ops = model_ops(flatbuffer, flatbuffer_path.name)
    methods = resolver_methods(ops)  # before any file is written: it may refuse the model
    arena = arena_bytes(tflm)
    origin = flatbuffer_path.name
    names = {"c_array": FILE_NAMES["c_array"], **COMPANION_FILES["c_array"]}
    files = {key: folder / name for key, name in names.items()}
    header = names["c_array_header"]
    files["c_array"].write_text(array_source(flatbuffer, header, origin))
    files["c_array_header"].write_text(header_source(header, origin))
    files["c_array_main"].write_text(harness_source(ops, methods, arena, origin))
    entry = {
        "made_from": origin,
        "array": ARRAY_NAME,
        "length": LENGTH_NAME,
        "array_bytes": len(flatbuffer),
        "alignment": ARRAY_ALIGNMENT,
        "ops": ops,
        "resolver": f"tflite::MicroMutableOpResolver<{len(ops)}>",
        "arena_bytes": arena["bytes"],
        "arena": {
            "measured_bytes": arena["measured_bytes"],
            "margin_bytes": arena["margin_bytes"],
            "how": "TFLM's smallest working arena for the file (reference kernels, never "
            f"below its recorded total) plus {ARENA_MARGIN_FRACTION:.0%} (at least "
            f"{ARENA_MARGIN_MIN_BYTES} bytes), rounded up to {ARRAY_ALIGNMENT} bytes",
        },
        "build": "see the opening comment of main.cc",
    }
    return files, entry
