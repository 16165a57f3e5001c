"""The int8 flatbuffer in TensorFlow Lite Micro, the runtime an MCU board runs it with.

`tflite-micro` (TFLM's own Python interpreter: its C++ interpreter and reference kernels,
with numpy and flatbuffers, no TensorFlow) is a dependency of the project, and runs in
`nas/export/tflm_worker.py` as a subprocess of this Python: TFLM prints its allocations on
file descriptor 2, which only a process of its own can take over safely. The check:

    entry = check_in_tflm(model, inputs, {"reference": ..., "default": ...}, labels, "val")

runs the file on the int8 inputs LiteRT ran it on, compares its outputs with LiteRT's
reference kernels' (the goal: every one within `ALLOWED_LSB`; an export fails only where
TFLM picks another class on more than 1% of the images), measures TFLM's top-1, and
returns the card's `tflite.tflm`: TFLM's arena (head: the
tensors planned by lifetime and the kernels' scratch; tail: persistent per-op state,
per-channel quantization data and the interpreter's structs), its parts, and the smallest
arena the file runs in.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ExportError
from nas.export.script_worker import run_script

WORKER = Path(__file__).with_name("tflm_worker.py")
TIMEOUT_S = 1800  # reference kernels: 20-100 ms per inference on 2 cores, over a split
ALLOWED_LSB = 1  # two runtimes' int8 kernels may round a requantization differently
# One requantization rounded otherwise can grow by a layer's gain on its way to the output
# (2 LSB on 0.04% of one demo subnet's logits), so beyond ALLOWED_LSB is a warning; a file
# whose classes differ is run differently, and fails
MIN_SAME_CLASS = 0.99


def run_in_tflm(model: Path, inputs: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """TFLM's figures for `model` (the worker's reply) and its raw outputs on `inputs`
    (one row per inference, in the model's input type). ExportError where TFLM cannot
    load or run the file."""
    with tempfile.TemporaryDirectory(prefix="nas-tflm-") as tmp:
        folder = Path(tmp)
        np.save(folder / "inputs.npy", inputs)
        request = {
            "model": str(model),
            "inputs": str(folder / "inputs.npy"),
            "outputs": str(folder / "outputs.npy"),
        }
        reply = run_script(
            sys.executable,
            WORKER,
            folder,
            request,
            TIMEOUT_S,
            timed_out=f"TFLM ran {model.name} for over {TIMEOUT_S} s; stopped",
            failed=lambda stderr: (
                f"TFLite Micro cannot run {model.name}: "
                f"{(stderr.splitlines() or ['(no message)'])[-1]}"
            ),
        )
        return reply, np.load(request["outputs"])


def check_in_tflm(
    model: Path,
    inputs: np.ndarray,
    litert: dict[str, np.ndarray],
    labels: np.ndarray,
    split: str,
) -> dict[str, Any]:
    """The card's `tflm` entry for `model`, run on `inputs` (the int8 inputs of `split`'s
    images, labelled `labels`). `litert`: LiteRT's raw outputs on the same inputs with its
    "reference" kernels and its "default" ones. TFLM's reference kernels implement the same
    integer arithmetic as LiteRT's reference ones: the entry records how far the outputs
    are apart (goal: ALLOWED_LSB) and a `warning` beyond it; ExportError where TFLM picks
    the same class on fewer than MIN_SAME_CLASS of the images. LiteRT's default kernels
    round differently, by a few LSB after some fifty layers: recorded, as is how often
    they pick TFLM's class."""
    figures, outputs = run_in_tflm(model, inputs)
    if outputs.shape != litert["reference"].shape:
        raise ExportError(
            f"TFLite Micro gave outputs of shape {outputs.shape} for {model.name}, LiteRT "
            f"{litert['reference'].shape}"
        )

    def lsb(other: np.ndarray) -> np.ndarray:
        return np.abs(outputs.astype(np.int64) - other.astype(np.int64))

    to_reference, to_default = lsb(litert["reference"]), lsb(litert["default"])
    worst = int(to_reference.max(initial=0))
    classes = outputs.argmax(1)
    same_class = float(np.mean(classes == litert["reference"].argmax(1)))
    if same_class < MIN_SAME_CLASS:
        raise ExportError(
            f"TFLite Micro runs {model.name} differently from LiteRT's reference kernels: "
            f"another class on {1 - same_class:.1%} of {len(inputs)} {split} images (outputs "
            f"up to {worst} LSB apart)"
        )
    entry = {
        "runtime": f"TensorFlow Lite Micro (tflite-micro {figures['version']}, reference kernels)",
        "arena_bytes": figures["arena_bytes"],
        "min_arena_bytes": figures["min_arena_bytes"],
        "allocations": figures["allocations"],
        "top1": {split: float(np.mean(classes == labels))},
        "agreement_with_litert": {
            "split": split,
            "images": len(inputs),
            "reference_kernels": {
                "max_abs_diff_lsb": worst,
                "identical_fraction": round(float(np.mean(to_reference == 0)), 5),
                "within_allowed_fraction": round(float(np.mean(to_reference <= ALLOWED_LSB)), 5),
                "allowed_lsb": ALLOWED_LSB,
                "same_class_fraction": same_class,
            },
            "default_kernels": {
                "max_abs_diff_lsb": int(to_default.max(initial=0)),
                "same_class_fraction": float(np.mean(classes == litert["default"].argmax(1))),
            },
        },
        "seconds": figures["seconds"],
    }
    if worst > ALLOWED_LSB:
        entry["warning"] = (
            f"TFLite Micro's outputs are up to {worst} LSB from LiteRT's reference kernels' "
            f"(goal {ALLOWED_LSB}) on {np.mean(to_reference > ALLOWED_LSB):.2%} of the "
            f"outputs of {len(inputs)} {split} images; same class on {same_class:.1%}"
        )
    return entry
