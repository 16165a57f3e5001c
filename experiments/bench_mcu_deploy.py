"""MCU deployment of a trained supernet's subnets through TFLite: the int8 flatbuffer as an
MCU export writes it (full integer, checked in TFLite Micro), against the MCU cost model.

For each arch (a JSON list of archs, or `nas pareto --format json` output, of which
--points are taken evenly along the front), it writes the fp32 and int8 flatbuffers with
the export's own writer for an MCU target (converted in the converter's environment,
`make tflite-env`), and prints one JSON object per subnet:
  float_ops                  ops of the int8 file left in float (goal: none)
  int8_top1_drop_points      fp32 - int8 top-1 of the files in LiteRT, val and test
  tflm_vs_litert             TFLM's outputs against LiteRT's reference kernels (max LSB,
                             identical fraction) and default kernels (same class fraction)
  tflm_arena_bytes           head, tail, total as TFLM recorded them; min_arena_bytes, the
                             smallest arena the file runs in; the tail's parts
  tflm_predicted             the --device model's `runtime: tflm` figures for the arch: the
                             arena (bytes: head, tail, allocated, arena = the smallest one
                             it runs in) and flash_kb (flatbuffer + TFLM's runtime)
  tflm_error                 predicted / recorded - 1: arena against min_arena_bytes,
                             allocated against the recorded total, flash against the file's
                             size + the runtime's
  fits_limit                 with --sram-limit-kb: whether the file runs in that arena
  predicted                  the --device model's TinyEngine figures (peak_sram_kb and
                             MCUNet's analytic _act_kb and _layerwise_kb, flash_kb)
  flatbuffer_kb              the int8 file's size
then one summary object (means and worsts over the subnets).

    python experiments/bench_mcu_deploy.py --supernet runs/mnist-supernet-quick \\
        --archs runs/demo-quick/front-mcu.json --points 4 [--device stm32f746]
        [--calibration-images 300] [--sram-limit-kb 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import latency_models as lm
from latency_models.arrays import SpecBatch
from latency_models.models.mcu import PEAK_SRAM_DEFINITIONS
from nas.export.writers import write_model_files
from supernet import open_artifact
from supernet.quantization import DEFAULT_CALIBRATION_IMAGES


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def load_archs(path: Path, points: int | None) -> list[dict[str, Any]]:
    """Archs from a JSON list, or from a front (`nas pareto --format json`), `points` of
    them spread evenly along it (its order: best quality first)."""
    data = json.loads(path.read_text())
    archs = [c["arch"] for c in data["front"]] if isinstance(data, dict) else list(data)
    if points is None or len(archs) <= points:
        return archs
    index = np.unique(np.linspace(0, len(archs) - 1, points).round().astype(int))
    return [archs[i] for i in index]


def tflm_prediction(hw: Any, spec: Any) -> dict[str, Any]:
    memory = hw.tflm_memory(SpecBatch.of([spec]))
    arena = {k: int(memory[k][0]) for k in ("head", "tail", "allocated", "arena")}
    return {"arena_bytes": arena, "flash_kb": hw.predict(spec, runtime="tflm")["flash_kb"]}


def measure(
    trained: Any, arch: dict, hw: Any, calibration: int, folder: Path, limit_kb: float | None
) -> dict:
    model = trained.exportable(arch, {})
    _, checks = write_model_files(
        model, arch, ["tflite", "tflite_int8"], folder, calibration, for_mcu=True
    )
    lite = checks["tflite"]
    tflm = lite["tflm"]
    spec = trained.space.to_spec(arch, batch=1)
    predicted = hw.predict(spec)
    tflm_predicted = tflm_prediction(hw, spec)
    arena = tflm_predicted["arena_bytes"]
    shipped_flash_kb = lite["bytes"]["int8"] / 1024 + hw.tflm.runtime_flash_kb
    return {
        "arch": arch,
        "float_ops": lite["float_ops"],
        "top1": lite["top1"],
        "int8_top1_drop_points": lite["top1_drop_points"],
        "tflm_top1": tflm["top1"],
        "tflm_vs_litert": tflm["agreement_with_litert"],
        "tflm_arena_bytes": tflm["arena_bytes"],
        "min_arena_bytes": tflm["min_arena_bytes"],
        "tflm_allocations": tflm["allocations"],
        "tflm_predicted": tflm_predicted,
        "tflm_error": {
            "arena": round(arena["arena"] / tflm["min_arena_bytes"] - 1, 5),
            "allocated": round(arena["allocated"] / tflm["arena_bytes"]["total"] - 1, 5),
            "flash": round(tflm_predicted["flash_kb"] / shipped_flash_kb - 1, 5),
        },
        "fits_limit": None if limit_kb is None else tflm["min_arena_bytes"] / 1024 <= limit_kb,
        "predicted": {k: predicted[k] for k in (*PEAK_SRAM_DEFINITIONS, "flash_kb")},
        "flatbuffer_kb": round(lite["bytes"]["int8"] / 1024, 3),
        "arena_over_predicted_sram": round(
            tflm["arena_bytes"]["total"] / 1024 / predicted["peak_sram_kb"], 3
        ),
        "seconds": {**lite["seconds"], "tflm": tflm["seconds"]},
    }


def summary(rows: list[dict]) -> dict:
    drops = {s: [r["int8_top1_drop_points"][s] for r in rows] for s in ("val", "test")}
    return {
        "summary": True,
        "subnets": len(rows),
        "float_ops_left": sum(sum(r["float_ops"].values()) for r in rows),
        "int8_top1_drop_points": {
            s: {"mean": round(statistics.mean(d), 3), "worst": max(d)} for s, d in drops.items()
        },
        "tflm_vs_litert_reference_max_lsb": max(
            r["tflm_vs_litert"]["reference_kernels"]["max_abs_diff_lsb"] for r in rows
        ),
        "tflm_vs_litert_reference_over_1_lsb": sum(
            r["tflm_vs_litert"]["reference_kernels"]["max_abs_diff_lsb"] > 1 for r in rows
        ),
        "tflm_vs_litert_reference_within_1_lsb_min_fraction": min(
            r["tflm_vs_litert"]["reference_kernels"]["within_allowed_fraction"] for r in rows
        ),
        "tflm_arena_over_predicted_sram": {
            "mean": round(statistics.mean(r["arena_over_predicted_sram"] for r in rows), 3),
            "min": min(r["arena_over_predicted_sram"] for r in rows),
            "max": max(r["arena_over_predicted_sram"] for r in rows),
        },
        "tflm_runtime_error": {
            name: {
                "mape": round(statistics.mean(abs(r["tflm_error"][name]) for r in rows), 5),
                "worst": max((r["tflm_error"][name] for r in rows), key=abs),
                "within_5_percent": sum(abs(r["tflm_error"][name]) <= 0.05 for r in rows),
            }
            for name in ("arena", "allocated", "flash")
        },
        "fit_limit": sum(bool(r["fits_limit"]) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supernet", required=True, help="a trained supernet (file or run)")
    parser.add_argument("--archs", type=Path, required=True, help="archs or a front, JSON")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--device", default="stm32f746", help="an MCU hardware profile")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    parser.add_argument("--sram-limit-kb", type=float, help="the search's arena limit to check")
    args = parser.parse_args()
    trained = open_artifact(args.supernet).trained()
    hw = lm.load_hardware(args.device)
    if getattr(hw, "tflm", None) is None:
        raise SystemExit(f"{args.device}: not an MCU profile with TFLite Micro's constants")
    rows = []
    for index, arch in enumerate(load_archs(args.archs, args.points)):
        with tempfile.TemporaryDirectory(prefix="bench-mcu-") as tmp:
            row = {
                "subnet": index,
                **measure(
                    trained, arch, hw, args.calibration_images, Path(tmp), args.sram_limit_kb
                ),
            }
        emit(row)
        rows.append(row)
    emit(summary(rows))


if __name__ == "__main__":
    main()
