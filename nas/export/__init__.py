"""Export a searched candidate as a standalone model with a card of its measured and
predicted figures.

The subnet is extracted from the supernet after BatchNorm recalibration (the statistics it
is evaluated with), or built with fine-tuned weights (`nas finetune`), then written in the
formats asked for: TorchScript, torch.export's .pt2, ONNX, a state_dict, and what devices
run: int8 ONNX (static quantization), fp16 and bf16 ONNX, TFLite flatbuffers, and the int8
flatbuffer as a C array with a TFLite Micro harness. Every file is run in a runtime that
loads it and compared with torch (the int8 file: its top-1 measured) before the export
counts as done. By default an export writes the formats each of the
search's targets runs at its precision (`default_formats`). The export is recorded in SQL.

- formats: the format names, the defaults, and `resolve_formats`, the rule of every door
- candidate: a candidate loaded from SQL with the trained file its search ran with
- writers: each format written and checked in its runtime
- quantize: static int8 and float16 ONNX, measured in onnxruntime
- tflite, litert_worker: TFLite flatbuffers, converted in an environment of their own
- tflm, tflm_worker: an MCU target's int8 flatbuffer run in TensorFlow Lite Micro
- c_array: the int8 flatbuffer as C++ sources, with a TensorFlow Lite Micro harness
- card: the model card, and the MCU costs of the shipped int8 files
- run: `export_candidate`, staged and moved into place
- jobs: exports queued for workers (the HTTP API), their leases, listings and files
"""

from nas.export.candidate import StoredCandidate, finetuned_weights, load_candidate, search_family
from nas.export.formats import (
    DEFAULT_FORMATS,
    FILE_NAMES,
    FORMATS,
    PRECISION_FORMATS,
    default_formats,
    format_choices,
    parse_formats,
    resolve_formats,
)
from nas.export.jobs import (
    claim_export,
    export_file,
    export_info,
    list_exports,
    queue_export,
    run_export_job,
)
from nas.export.run import CARD_NAME, ExportResult, check_out_dir, export_candidate
from nas.export.writers import write_int8, write_onnx

__all__ = [
    "CARD_NAME",
    "DEFAULT_FORMATS",
    "FILE_NAMES",
    "FORMATS",
    "PRECISION_FORMATS",
    "ExportResult",
    "StoredCandidate",
    "check_out_dir",
    "claim_export",
    "default_formats",
    "export_candidate",
    "export_file",
    "export_info",
    "finetuned_weights",
    "format_choices",
    "list_exports",
    "load_candidate",
    "parse_formats",
    "queue_export",
    "resolve_formats",
    "run_export_job",
    "search_family",
    "write_int8",
    "write_onnx",
]
