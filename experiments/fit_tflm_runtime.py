"""Fit the `tflm` constants of an MCU profile to recorded TFLite Micro arenas and flatbuffer
sizes, and check the `tflm` runtime on held-out recordings.

Records are JSON lines as `experiments/record_tflm_arena.py` prints them (`space`, `arch`,
`file_bytes`, `tflm_arena_bytes`). What is known from TFLM's allocator is kept fixed (24 B
per TfLiteEvalTensor, 64 B per NodeAndRegistration, 8 B per output channel of a conv /
depthwise / fully connected op; in the file, an int32 bias and 24 B of per-channel
quantization per output channel); non-negative least squares fits the rest:
  tail - fixed terms      = opdata.weighted x conv-like ops + opdata.other x other ops + base
  file - weights - fixed  = tensor_bytes x tensors + op_bytes x ops + base_bytes
  min arena - tail        = planning_tensor_bytes x tensors, on the records whose smallest
                            working arena is above the recorded total (planning outgrew head)
Prints one JSON object per held-out subnet (predicted and recorded arena and flash), then a
summary (MAPE and worst), and with --write a profile with the fitted `tflm` mapping. The
`arena` error is against the smallest arena the file runs in (what a board must give it);
`allocated` against the total TFLM reports once its tensors are allocated.

    python experiments/fit_tflm_runtime.py --fit runs/tflm-fit.jsonl \\
        --check runs/tflm-mcu.jsonl runs/tflm-mnist.jsonl --profile stm32f746 \\
        [--write latency_models/profiles/stm32f746.yaml]
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

import latency_models as lm
import supernet
from latency_models.arrays import SpecBatch
from latency_models.hardware import dump_profile, read_yaml
from latency_models.models.mcu import MCUModel

# Known from TFLM's RecordingMicroAllocator and the flatbuffer's layout (see module doc)
KNOWN = {"eval_tensor_bytes": 24, "node_bytes": 64, "channel_bytes": 8}
KNOWN_FLATBUFFER = {"bias_bytes": 4, "channel_bytes": 24}
# The interpreter's code on a Cortex-M, as TFLM's documentation states it
RUNTIME_FLASH_KB = 16.0
RUNTIME_FLASH_SOURCE = (
    "TensorFlow Lite for Microcontrollers documentation (tensorflow.org/lite/microcontrollers): "
    "'The core runtime just fits in 16 KB on an Arm Cortex M3'. The core runtime only "
    "(interpreter, allocator, planner): the op kernels a model links add to it, so flash_kb "
    "is a lower bound of a board build by their code"
)


def read_records(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def graphs(hw: MCUModel, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    specs = [supernet.get_space(r["space"]).to_spec(r["arch"], batch=1) for r in rows]
    return hw.tflm_graph(SpecBatch.of(specs))


def fit(hw: MCUModel, rows: list[dict[str, Any]], records: list[Path]) -> dict[str, Any]:
    g = graphs(hw, rows)
    tail = np.array([r["tflm_arena_bytes"]["tail"] for r in rows], float)
    known_tail = (
        KNOWN["eval_tensor_bytes"] * g["tensors"]
        + KNOWN["node_bytes"] * g["ops"]
        + KNOWN["channel_bytes"] * g["channels"]
    )
    ones = np.ones_like(tail)
    (weighted, other, base), _ = nnls(
        np.stack([g["weighted_ops"], g["ops"] - g["weighted_ops"], ones], axis=1),
        tail - known_tail,
    )
    planned = [
        i for i, r in enumerate(rows) if r["min_arena_bytes"] > r["tflm_arena_bytes"]["total"]
    ]
    if not planned:
        raise SystemExit("no record's smallest arena exceeds its total: planning cannot be fitted")
    planning = np.array(
        [rows[i]["min_arena_bytes"] - rows[i]["tflm_arena_bytes"]["tail"] for i in planned], float
    )
    (planning_tensor_bytes,), _ = nnls(g["tensors"][planned, None], planning)
    file = np.array([r["file_bytes"] for r in rows], float)
    per_channel = KNOWN_FLATBUFFER["bias_bytes"] + KNOWN_FLATBUFFER["channel_bytes"]
    known_file = g["weight_bytes"] + per_channel * g["channels"]
    (tensor, op, file_base), _ = nnls(
        np.stack([g["tensors"], g["ops"], ones], axis=1), file - known_file
    )
    versions = sorted({r.get("tflite_micro", "") for r in rows} - {""})
    return {
        "runtime_flash_kb": RUNTIME_FLASH_KB,
        "runtime_flash_source": RUNTIME_FLASH_SOURCE,
        **KNOWN,
        "opdata_bytes": {"weighted": _round(weighted), "other": _round(other)},
        "tail_base_bytes": _round(base),
        "planning_tensor_bytes": _round(planning_tensor_bytes),
        "flatbuffer": {
            "tensor_bytes": _round(tensor),
            "op_bytes": _round(op),
            "base_bytes": _round(file_base),
            **KNOWN_FLATBUFFER,
        },
        "calibration": {
            "fitted": str(datetime.date.today()),
            "by": "experiments/fit_tflm_runtime.py",
            "records": [str(p) for p in records],
            "subnets": len(rows),
            "spaces": sorted({r["space"] for r in rows}),
            "recorded_with": "tflite-micro "
            + (", ".join(versions) or "(version not recorded)")
            + ", reference kernels, x86-64 (its structs' sizes; a 32-bit Cortex-M's are "
            "smaller, and CMSIS-NN kernels add scratch buffers to the head)",
            "files": "full-integer int8 flatbuffers of nas export (tflite_int8, for_mcu)",
        },
    }


def check(hw: MCUModel, rows: list[dict[str, Any]]) -> dict[str, Any]:
    specs = [supernet.get_space(r["space"]).to_spec(r["arch"], batch=1) for r in rows]
    predicted = hw.predict_arrays(specs, runtime="tflm")
    memory = hw.tflm_memory(SpecBatch.of(specs))
    assert hw.tflm is not None
    errors: dict[str, list[float]] = {
        name: [] for name in ("arena", "allocated", "head", "tail", "flash")
    }
    for index, row in enumerate(rows):
        recorded = row["tflm_arena_bytes"]
        flash = row["file_bytes"] / 1024 + hw.tflm.runtime_flash_kb
        result = {
            "space": row["space"],
            "arch": row["arch"],
            "arena_bytes": {
                "predicted": {
                    k: int(memory[k][index]) for k in ("head", "tail", "allocated", "arena")
                },
                "recorded": {**recorded, "min_arena": row["min_arena_bytes"]},
            },
            "flash_kb": {"predicted": float(predicted["flash_kb"][index]), "recorded": flash},
        }
        errors["arena"].append(memory["arena"][index] / row["min_arena_bytes"] - 1)
        errors["allocated"].append(memory["allocated"][index] / recorded["total"] - 1)
        errors["head"].append(memory["head"][index] / recorded["head"] - 1)
        errors["tail"].append(memory["tail"][index] / recorded["tail"] - 1)
        errors["flash"].append(predicted["flash_kb"][index] / flash - 1)
        print(json.dumps(result), flush=True)
    return {
        name: {
            "mape": round(float(np.mean(np.abs(e))), 4),
            "worst": round(float(max(e, key=abs)), 4),
        }
        for name, e in errors.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", type=Path, nargs="+", required=True, help="records to fit")
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="held-out records")
    parser.add_argument("--profile", default="stm32f746", help="an MCU profile to start from")
    parser.add_argument("--write", type=Path, help="write the profile with its tflm constants")
    args = parser.parse_args()
    base = lm.load_hardware(args.profile)
    if not isinstance(base, MCUModel):
        raise SystemExit(f"{args.profile} is a {base.kind} profile, not an MCU one")
    fit_rows = read_records(args.fit)
    profile = dict(read_yaml(Path(base.source)))
    profile["tflm"] = fit(base, fit_rows, args.fit)
    hw = MCUModel(base.name, profile, base.source)
    print(json.dumps({"fitted": profile["tflm"]}), flush=True)
    summary = {"fit": check(hw, fit_rows)}
    held_out = read_records(args.check)
    if held_out:
        fitted = {json.dumps(r["arch"], sort_keys=True) for r in fit_rows}
        if any(json.dumps(r["arch"], sort_keys=True) in fitted for r in held_out):
            raise SystemExit("a held-out arch was also fitted on")
        summary["held_out"] = check(hw, held_out)
        summary["held_out_subnets"] = {
            space: sum(r["space"] == space for r in held_out)
            for space in sorted({r["space"] for r in held_out})
        }
    print(json.dumps({"summary": summary}), flush=True)
    if args.write:
        dump_profile(profile, args.write)


def _round(value: float) -> float:
    return float(f"{value:.4g}")


if __name__ == "__main__":
    main()
