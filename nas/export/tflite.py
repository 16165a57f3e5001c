"""TFLite flatbuffers (fp32 and full-integer int8) for microcontrollers and phones.

litert-torch converts torch.export programs to TFLite, but it pins pydantic 2.11 and
typing_extensions 4.12, below what the service needs, so it lives in an environment of its
own: `make tflite-env` makes `.venv-tflite` (the same pinned CPU torch, and litert-torch),
or NAS_TFLITE_PYTHON names another Python that has it. The conversion and the
measurements run there, in `nas/export/litert_worker.py`, as a subprocess; this module prepares
its inputs and checks what it reports. The files' top-1 is measured in LiteRT's own
interpreter on the family's val and test images, as the int8 ONNX file's is in
onnxruntime. For an MCU target the int8 file must be integer end to end (no float op
left), and it is run in TensorFlow Lite Micro too (`nas.export.tflm`): its outputs against
LiteRT's on the validation images, and the arena TFLM needs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ExportError
from nas.export.script_worker import run_script
from nas.export.tflm import check_in_tflm
from supernet.family import ExportableModel

PYTHON_VARIABLE = "NAS_TFLITE_PYTHON"
DEFAULT_ENV = Path(__file__).resolve().parents[2] / ".venv-tflite"  # the repository root
WORKER = Path(__file__).with_name("litert_worker.py")
TIMEOUT_S = 1800  # converting takes 20-40 s per file on 2 cores; a hang must still end
FP32_TOLERANCE = 1e-4  # relative to the outputs' scale, as for the fp32 ONNX file
SCHEME = (
    "full integer: int8 input and output, per-channel symmetric int8 weights, per-tensor "
    "int8 activations with min/max ranges over the calibration images (ai-edge-quantizer's "
    "static_wi8_ai8 recipe on the float flatbuffer); ops left in float, if any, are listed "
    "in `float_ops`"
)
TFLM_SPLIT = "val"  # where TFLM's outputs are compared with LiteRT's


def converter_python() -> Path:
    """The Python that has litert-torch, or ExportError saying how to make one."""
    named = os.environ.get(PYTHON_VARIABLE)
    python = Path(named) if named else DEFAULT_ENV / "bin" / "python"
    if not python.is_file():
        where = f"{PYTHON_VARIABLE}={named}" if named else f"{DEFAULT_ENV} is missing"
        raise ExportError(
            f"TFLite export needs litert-torch, which runs in its own environment (it pins "
            f"pydantic below the service's): {where}. Create it with `make tflite-env`, "
            f"or set {PYTHON_VARIABLE} to a Python with litert-torch 0.10 installed"
        )
    return python


def write_tflite(
    model: ExportableModel,
    pt2: Path,
    fp32: Path | None,
    int8: Path | None,
    calibration_images: int,
    for_mcu: bool = False,
) -> dict[str, Any]:
    """Convert `pt2` (the candidate's torch.export file) to the fp32 and/or int8
    flatbuffers asked for, with batch 1, and measure them in LiteRT: the fp32 file's outputs
    against torch's, and each file's top-1 on val and test. `for_mcu`: the int8 file goes to
    a microcontroller, so a float op left in it is an ExportError, and it is run in TFLM
    (`tflm` in the entry). Returns the card's `tflite`."""
    if int8 is not None and model.labelled is None:
        raise ExportError(
            f"int8 TFLite export needs labelled images to calibrate and measure on; the "
            f"{model.space} family has none (int8 is for classifiers)"
        )
    if calibration_images < 1:
        raise ExportError(f"--calibration-images must be >= 1, got {calibration_images}")
    in_tflm = for_mcu and int8 is not None
    with tempfile.TemporaryDirectory(prefix="nas-tflite-") as tmp:
        folder = Path(tmp)
        check = folder / "check.npy"
        np.save(check, model.check_inputs.numpy())
        request: dict[str, Any] = {
            "pt2": str(pt2),
            "input_shape": [1, *model.example.shape[1:]],
            "fp32": str(fp32) if fp32 else None,
            "int8": str(int8) if int8 else None,
            "check": str(check),
            "splits": {},
            "int8_reference": None,
        }
        if model.labelled is not None:
            train, _ = model.labelled("train")
            request["calibration"] = str(folder / "calibration.npy")
            np.save(request["calibration"], train[:calibration_images].numpy())
            for split in ("val", "test"):
                images, labels = model.labelled(split)
                paths = [str(folder / f"{split}-images.npy"), str(folder / f"{split}-labels.npy")]
                np.save(paths[0], images.numpy())
                np.save(paths[1], labels.numpy())
                request["splits"][split] = paths
        if in_tflm:
            request["int8_reference"] = {
                "split": TFLM_SPLIT,
                "inputs": str(folder / "int8-inputs.npy"),
                "outputs": str(folder / "litert-reference-outputs.npy"),
                "outputs_default": str(folder / "litert-default-outputs.npy"),
            }
        reply = _run_worker(folder, request)
        card = _checked(reply, fp32 is not None, int8 is not None, for_mcu)
        if in_tflm:
            assert int8 is not None and model.labelled is not None
            reference = request["int8_reference"]
            litert = {
                "reference": np.load(reference["outputs"]),
                "default": np.load(reference["outputs_default"]),
            }
            _, labels = model.labelled(TFLM_SPLIT)
            card["tflm"] = check_in_tflm(
                int8, np.load(reference["inputs"]), litert, labels.numpy(), TFLM_SPLIT
            )
    return card


def _run_worker(folder: Path, request: dict[str, Any]) -> dict[str, Any]:
    """`litert_worker.py` run on `request` in the converter's environment; its reply."""
    python = converter_python()
    return run_script(
        python,
        WORKER,
        folder,
        request,
        TIMEOUT_S,
        timed_out=f"TFLite conversion took over {TIMEOUT_S} s; stopped",
        failed=lambda stderr: (
            f"TFLite conversion failed ({python}):\n" + "\n".join(stderr.splitlines()[-6:])
        ),
    )


def _checked(reply: dict[str, Any], fp32: bool, int8: bool, for_mcu: bool) -> dict[str, Any]:
    """The card's `tflite` entry from the worker's reply; ExportError where the fp32 file
    does not compute what torch computes, or where an int8 file for an MCU has float ops."""
    card: dict[str, Any] = {
        "runtime": f"LiteRT interpreter (ai-edge-litert {reply['versions'].get('ai-edge-litert')})",
        "converter": reply["versions"],
        "batch": 1,
        "io": reply["io"],
        "bytes": reply["bytes"],
        "top1": reply["top1"],
        "seconds": reply["seconds"],
    }
    if fp32:
        check = reply["check"]
        allowed = FP32_TOLERANCE * max(1.0, check["output_scale"])
        if check["max_abs_diff"] > allowed:
            raise ExportError(
                f"LiteRT and torch disagree on the fp32 flatbuffer (max abs difference "
                f"{check['max_abs_diff']:.3g} > {allowed:.3g}); the file is not usable"
            )
        card["fp32_check"] = {"max_abs_diff": check["max_abs_diff"], "allowed": allowed}
    if int8:
        if for_mcu and reply["float_ops"]:
            left = ", ".join(f"{op} x{count}" for op, count in sorted(reply["float_ops"].items()))
            raise ExportError(
                f"the int8 flatbuffer for the MCU target still computes in float: {left}; an "
                "MCU runtime would run them as float kernels, so the file is not shipped"
            )
        card["scheme"] = SCHEME
        card["float_ops"] = reply["float_ops"]
        card["calibration_images"] = reply["calibration_images"]
        card["calibration_split"] = "train"
        if fp32:
            top1 = reply["top1"]
            card["top1_drop_points"] = {
                split: round(100 * (top1["fp32"][split] - top1["int8"][split]), 3)
                for split in top1["int8"]
            }
            card["size_ratio"] = round(reply["bytes"]["fp32"] / reply["bytes"]["int8"], 3)
    return card
