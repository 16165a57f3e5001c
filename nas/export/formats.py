"""The export formats: their names and file names, the search's defaults, and the one rule
that chooses what an export writes (`resolve_formats`), for every door."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas.errors import ExportError
from nas.export.quantize import (
    QUANTIZATIONS,
)
from supernet.family import (
    ModelFamily,
)

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
    "c_array",
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
    "c_array": "model_data.cc",  # the int8 flatbuffer as C++ data, with a TFLM harness
}
# what each format is for, in the words a door offers it with
FORMAT_LABELS = {
    "torchscript": "TorchScript",
    "onnx": "ONNX (fp32)",
    "state_dict": "PyTorch state_dict",
    "pt2": "torch.export (.pt2)",
    "onnx_fp16": "ONNX fp16 (GPU runtimes)",
    "onnx_bf16": "ONNX bf16 (GPU runtimes)",
    "onnx_int8": "ONNX int8 (top-1 measured)",
    "tflite": "TFLite (LiteRT, phones)",
    "tflite_int8": "TFLite int8 (TFLite Micro, NPUs)",
    "c_array": "C array for TFLite Micro (MCUs)",
}
INT8_FORMATS = ("onnx_int8", "tflite_int8", "c_array")
# the other files of a format written as several, by their names in the card's `files`
COMPANION_FILES = {"c_array": {"c_array_header": "model_data.h", "c_array_main": "main.cc"}}
# a format made from another format's file, which is then written too
MADE_FROM = {"c_array": "tflite_int8"}

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
    search's `default_formats`) with the files they are made from (`parse_formats`: a C
    array brings the int8 flatbuffer), plus with `quantize="int8"` the int8 ONNX file, and
    the int8 flatbuffer where `tflite` is asked for. Returns them with the defaults skipped
    and why."""
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
    """The format names in `text` (comma-separated, or a list), each once, with the format
    each one is made from (MADE_FROM) before it; ExportError naming an unknown one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    if not all(isinstance(f, str) for f in items):
        raise ExportError(
            f"formats must be format names, got {items!r}; allowed: {', '.join(FORMATS)}"
        )
    formats = [f.strip() for f in items if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown export format {bad or text!r}; allowed: {', '.join(FORMATS)}")
    with_sources = [source for f in formats for source in (MADE_FROM.get(f), f) if source]
    return list(dict.fromkeys(with_sources))


def format_choices(config: Any, family: ModelFamily) -> dict[str, Any]:
    """What an export of this search can be asked for, for a door to offer (GET
    /searches/ID/export-formats): each format the search's family can be written in, with
    its label and file, whether the search's defaults write it, and whether this server
    can write it now (a TFLite format needs the converter's environment); and the
    quantizations that apply (`resolve_formats`' `quantize`)."""
    from nas.export.tflite import converter_python

    defaults, skipped = default_formats(config, family)
    try:
        converter_python()
        no_tflite = None
    except ExportError:  # its message names server paths: say what is missing instead
        no_tflite = "needs the TFLite converter's environment on the server (make tflite-env)"
    choices = []
    for fmt in FORMATS:
        if fmt in INT8_FORMATS and not family.quantizes_int8:
            continue  # the family has no labelled images to calibrate on (default_formats)
        needs_tflite = fmt in TFLITE_FORMATS or MADE_FROM.get(fmt) in TFLITE_FORMATS
        unavailable = no_tflite if needs_tflite else None
        choices.append(
            {
                "name": fmt,
                "label": FORMAT_LABELS[fmt],
                "file": FILE_NAMES[fmt],
                "default": fmt in defaults,
                "available": unavailable is None,
                "unavailable": unavailable,
            }
        )
    return {
        "formats": choices,
        "default": defaults,
        "skipped": skipped,
        "quantize": list(QUANTIZATIONS) if family.quantizes_int8 else [],
    }
