"""int8 deployment of the demo supernet's MCU front: what quantization costs in accuracy,
saves in bytes and gains in speed, and how the MCU cost model's flash compares with the
file that ships.

For each of --points candidates spread evenly along the search's front for --target (best
first), it exports the fp32 and int8 ONNX files (static PTQ, measured in onnxruntime on the
files, on val and test), and where PTQ loses more than --threshold-points on val, fine-tunes
with QAT (`nas finetune`, --qat-epochs) and exports again with the fine-tuned weights. It
then times both files in onnxruntime on this CPU, interleaved, in the same run.

Prints one JSON object per front point, then one summary object:
  int8_top1_drop_points      fp32 - int8 top-1 (points, val and test): PTQ, and final (after
                             QAT where it was needed); mean and worst over the front
  int8_size_ratio            bytes of the fp32 file's tensors over the int8 file's
  int8_ort_speedup_vs_fp32   median fp32 time / median int8 time, onnxruntime, this CPU;
                             also for the same quantization with uint8 activations
  mcu_flash_pred_vs_file     the MCU model's predicted flash / (int8 file's tensors + runtime)

    python experiments/bench_quantize.py [--db sqlite:///runs/nas.db] [--search ID]
        [--target stm32f746] [--points 8] [--qat-epochs 2] [--threshold-points 0.5]

Exports are recorded in a copy of the database (runs/bench_quantize/nas.db), never in --db.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from nas import core
from nas.export import load_candidate
from nas.export.quantize import onnx_outputs, onnx_session, quantize_int8
from nas.store import Store
from supernet.quantization import DEFAULT_CALIBRATION_IMAGES

OUT = Path("runs/bench_quantize")


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def timed_ratio(fp32: Path, int8: Path, images: np.ndarray, repeats: int) -> dict:
    """Median seconds per run of each file on `images` (one batch), interleaved so that
    the machine's noise hits both alike; the ratio is fp32 / int8."""
    sessions = {"fp32": onnx_session(fp32), "int8": onnx_session(int8)}
    for session in sessions.values():  # warm-up: first runs allocate and pick kernels
        onnx_outputs(session, images)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(repeats):
        for name, session in sessions.items():
            started = time.perf_counter()
            onnx_outputs(session, images)
            times[name].append(time.perf_counter() - started)
    fp32_s, int8_s = statistics.median(times["fp32"]), statistics.median(times["int8"])
    return {"fp32_ms": 1e3 * fp32_s, "int8_ms": 1e3 * int8_s, "speedup": fp32_s / int8_s}


def calibration_images(db: Store, search_id: int, candidate: int) -> np.ndarray:
    """The images the export calibrated on: the first DEFAULT_CALIBRATION_IMAGES training
    images, preprocessed at the candidate's resolution."""
    found = load_candidate(db, search_id, candidate, "benchmark")
    model = found.opened.trained().exportable(found.arch, {})
    return model.labelled("train")[0][:DEFAULT_CALIBRATION_IMAGES].numpy()


def pick(front: list, count: int) -> list:
    """`count` points spread evenly along the front (its order: best quality first)."""
    if len(front) <= count:
        return list(front)
    index = np.unique(np.linspace(0, len(front) - 1, count).round().astype(int))
    return [front[i] for i in index]


def summary(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 3), "worst": round(float(np.max(values)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite:///runs/nas.db")
    parser.add_argument("--search", type=int, default=None, help="Default: the newest search.")
    parser.add_argument("--target", default="stm32f746")
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--threshold-points", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    source = args.db.removeprefix("sqlite:///")
    if not Path(source).is_file():
        raise SystemExit(f"no database at {source}: run `make demo` first")
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, OUT / "nas.db")  # exports are recorded in the copy
    db = Store(f"sqlite:///{OUT / 'nas.db'}")
    search_id = args.search or max(s["id"] for s in core.list_searches(db)["items"])
    front = core.query_front(search_id, target=args.target, db=db).front
    points = pick(front, args.points)
    rows = []
    for point in points:
        started = time.perf_counter()
        folder = OUT / f"search{search_id}-candidate{point.trial}"
        ptq = core.export(
            search_id, point.trial, "onnx,onnx_int8", folder / "ptq", db, force=True
        ).card
        quantization = ptq["quantization"]
        row = {
            "candidate": point.trial,
            "arch_id": point.arch_id,
            "resolution": ptq["arch"]["r"],
            "macs": ptq["macs"],
            "fp32_top1": quantization["top1"]["fp32"],
            "ptq_int8_top1": quantization["top1"]["int8"],
            "ptq_drop_points": quantization["top1_drop_points"],
            "size_ratio": quantization["size_ratio"],
            "weight_bytes": quantization["weight_bytes"],
        }
        final = quantization["top1_drop_points"]
        card = ptq
        if final["val"] > args.threshold_points:
            # the file's drop (onnxruntime) decided: fine-tune whatever torch's estimate says
            settings = {"epochs": args.qat_epochs, "threshold_points": 0}
            tuned = core.finetune(search_id, point.trial, settings, folder / "qat", db)
            card = core.export(
                search_id,
                point.trial,
                "onnx,onnx_int8",
                folder / "qat-export",
                db,
                force=True,
                weights=tuned.weights,
            ).card
            # against the inherited fp32 network: what the search promised
            final = {
                split: round(100 * (ptq_top1 - card["quantization"]["top1"]["int8"][split]), 3)
                for split, ptq_top1 in quantization["top1"]["fp32"].items()
            }
            row["qat"] = {
                "epochs": args.qat_epochs,
                "int8_top1": card["quantization"]["top1"]["int8"],
                "fp32_top1_after": card["quantization"]["top1"]["fp32"],
                "torch_int8_top1_val": tuned.report["int8_top1"],
                "seconds": tuned.report["seconds"],
            }
        row["final_drop_points"] = final
        shipped = card["deployment"]["mcu"].get(args.target)
        if shipped is not None:
            row["mcu_flash_pred_vs_file"] = shipped["flash_kb"]["predicted_over_shipped"]
            row["mcu_peak_sram_pred_vs_file"] = shipped["peak_sram_kb"].get(
                "predicted_over_shipped"
            )
        files = {f: folder / "ptq" / p["path"] for f, p in ptq["files"].items()}
        r = ptq["arch"]["r"]
        images = np.random.default_rng(0).standard_normal((64, 1, r, r)).astype(np.float32)
        row["ort_cpu"] = timed_ratio(files["onnx"], files["onnx_int8"], images, args.repeats)
        # the same quantization stored with uint8 activations, which onnxruntime's x86
        # kernels prefer (the shipped file keeps int8, what MCU runtimes take)
        uint8 = folder / "ptq" / "model.uint8-activations.onnx"
        calibration = calibration_images(db, search_id, point.trial)
        quantize_int8(files["onnx"], uint8, calibration, activations="uint8")
        row["ort_cpu_uint8_activations"] = timed_ratio(files["onnx"], uint8, images, args.repeats)
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        emit({"point": row})

    emit(
        {
            "search": search_id,
            "target": args.target,
            "points": len(rows),
            "front_size": len(front),
            "threshold_points": args.threshold_points,
            "int8_top1_drop_points": {
                "ptq": {
                    s: summary([r["ptq_drop_points"][s] for r in rows]) for s in ("val", "test")
                },
                "final": {
                    s: summary([r["final_drop_points"][s] for r in rows]) for s in ("val", "test")
                },
                "qat_needed": sum("qat" in r for r in rows),
            },
            "int8_size_ratio": {
                "mean": round(float(np.mean([r["size_ratio"] for r in rows])), 3),
                "min": min(r["size_ratio"] for r in rows),
                "max": max(r["size_ratio"] for r in rows),
            },
            "int8_ort_speedup_vs_fp32": {
                "geomean": round(
                    float(np.exp(np.mean([np.log(r["ort_cpu"]["speedup"]) for r in rows]))), 3
                ),
                "per_point": [round(r["ort_cpu"]["speedup"], 3) for r in rows],
                "batch": 64,
                "uint8_activations_geomean": round(
                    float(
                        np.exp(
                            np.mean(
                                [np.log(r["ort_cpu_uint8_activations"]["speedup"]) for r in rows]
                            )
                        )
                    ),
                    3,
                ),
            },
            "mcu_flash_pred_vs_file": [r.get("mcu_flash_pred_vs_file") for r in rows],
            "mcu_peak_sram_pred_vs_file": [r.get("mcu_peak_sram_pred_vs_file") for r in rows],
        }
    )


if __name__ == "__main__":
    main()
