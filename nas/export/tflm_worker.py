"""Run an int8 flatbuffer in TensorFlow Lite Micro's interpreter and record its arena.

Run as a script, `python tflm_worker.py REQUEST REPLY`, by `nas.export.tflm` with the
project's own Python (the `tflite-micro` package: TFLM's C++ interpreter, reference
kernels, with numpy and flatbuffers only, no TensorFlow). It imports nothing from the
project, and runs apart from the export's process because TFLM prints its allocations
(and its failures to allocate) on file descriptor 2, which a script alone may take over.

Request (JSON): `model` the .tflite file, `inputs` a .npy of inputs in the model's own
input type (one row per inference, batch 1), `outputs` where to save its raw outputs.

Reply (JSON):
  arena_bytes      head (tensors planned by lifetime, and kernels' scratch), tail
                   (persistent: per-op state, per-channel quantization data, the
                   interpreter's structs) and total, as TFLM's RecordingMicroAllocator
                   reports them after an inference
  allocations      the tail's parts: {what: {bytes, requested_bytes, count}}
  min_arena_bytes  the smallest `arena_size` the interpreter allocates and runs in (a few
                   hundred bytes above the total: the planner's own scratch, alignment)
  version          of tflite-micro
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_TOTALS = re.compile(r"Arena allocation (head|tail|total) (\d+) bytes")
_PART = re.compile(
    r"'(?P<what>[^']+)' used (?P<bytes>\d+) bytes with alignment overhead "
    r"\(requested (?P<requested>\d+) bytes for (?P<count>\d+) "
)
# far more than any MCU's SRAM: the first run only records what TFLM needs
RECORDING_ARENA_BYTES = 64 * 1024 * 1024


@contextmanager
def _stderr_captured() -> Iterator[Path]:
    """File descriptor 2 sent to a temporary file (TFLM's C++ writes there, not to
    sys.stderr); the file's path is yielded, readable once the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile(prefix="tflm-", suffix=".log", delete=False) as log:
        os.dup2(log.fileno(), 2)
    try:
        yield Path(log.name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _interpreter(model: bytes, arena_size: int) -> Any:
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena_size)


def _runs(model: bytes, arena_size: int, sample: np.ndarray) -> bool:
    """Whether TFLM allocates the model in `arena_size` bytes and runs one inference."""
    try:
        interpreter = _interpreter(model, arena_size)
        interpreter.set_input(sample, 0)
        interpreter.invoke()
    except (RuntimeError, ValueError):
        return False
    return True


def _smallest_arena(model: bytes, at_least: int, sample: np.ndarray) -> int:
    """The smallest arena TFLM runs the model in: a bisection above `at_least` (the
    recorded total, below which nothing fits)."""
    low, high = at_least, 2 * at_least + 64 * 1024
    if not _runs(model, high, sample):
        raise RuntimeError(f"TFLM does not run the model in {high} bytes")
    while low < high:
        middle = (low + high) // 2
        if _runs(model, middle, sample):
            high = middle
        else:
            low = middle + 1
    return low


def _recorded(log: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    arena = {where: int(size) for where, size in _TOTALS.findall(log)}
    if set(arena) != {"head", "tail", "total"}:
        raise RuntimeError(f"TFLM printed no arena figures: {log[-500:]!r}")
    parts = {
        m["what"]: {
            "bytes": int(m["bytes"]),
            "requested_bytes": int(m["requested"]),
            "count": int(m["count"]),
        }
        for m in _PART.finditer(log)
    }
    return arena, parts


def main(request: dict[str, Any]) -> dict[str, Any]:
    import tflite_micro

    model = Path(request["model"]).read_bytes()
    inputs = np.load(request["inputs"])
    started = time.perf_counter()
    with _stderr_captured() as log:
        recording = _interpreter(model, RECORDING_ARENA_BYTES)
        recording.set_input(inputs[:1], 0)
        recording.invoke()
        recording.print_allocations()
    arena, parts = _recorded(log.read_text())
    log.unlink()
    with _stderr_captured() as failures:  # each arena too small prints why
        smallest = _smallest_arena(model, arena["total"], inputs[:1])
    failures.unlink()
    # every inference in the smallest arena: the figure is one the whole split runs in
    interpreter = _interpreter(model, smallest)
    outputs = []
    for row in inputs:
        interpreter.set_input(row[None], 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).copy())
    np.save(request["outputs"], np.concatenate(outputs))
    return {
        "arena_bytes": arena,
        "allocations": parts,
        "min_arena_bytes": smallest,
        "version": tflite_micro.__version__,
        "seconds": round(time.perf_counter() - started, 2),
    }


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
