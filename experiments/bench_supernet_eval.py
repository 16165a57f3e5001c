"""Supernet evaluation throughput: BatchNorm recalibration and validation top-1 per candidate.

Prints one JSON object per figure:
  supernet_eval_candidates_per_s          candidates/s with the evaluator's defaults (precision
                                          "auto": bfloat16 where the CPU or GPU has it natively;
                                          BatchNorm folded into the convolutions)
  supernet_eval_fp32_candidates_per_s     the same archs as the evaluator ran them before: float32,
                                          BatchNorm apart, timed interleaved in this run
  supernet_eval_speedup_vs_fp32           the ratio (goal >= 2)
  supernet_eval_top1_difference           what the precision changes: mean and largest
                                          |top-1 difference| in points over the archs, and
                                          Kendall tau between the two measurements

    python experiments/bench_supernet_eval.py [--checkpoint runs/mnist-supernet] [--archs 40]
        [--recalibration-images N]   (the default evaluator's; the baseline keeps the run's)

Needs a trained supernet (`make demo` or `nas supernet train`). Uses every CPU thread, as an
in-process search does.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from supernet.mbconv.checkpoint import load_supernet


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet", type=Path)
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recalibration-images", type=int, default=None)
    args = parser.parse_args()
    trained = load_supernet(args.checkpoint)
    space = trained.space
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    options = {}
    if args.recalibration_images:
        options["recalibration_images"] = args.recalibration_images
    default = trained.evaluator(**options)
    fp32 = trained.evaluator(precision="fp32", fold_batch_norm=False)
    for evaluator in (default, fp32):  # resize every resolution's images once, warm up
        for r in sorted({a["r"] for a in archs}):
            evaluator.evaluate(next(a for a in archs if a["r"] == r))
    seconds = {"default": 0.0, "fp32": 0.0}
    top1: dict[str, list[float]] = {"default": [], "fp32": []}
    for arch in archs:  # interleaved: the machine's noise falls on both alike
        for name, evaluator in (("default", default), ("fp32", fp32)):
            started = time.perf_counter()
            top1[name].append(evaluator.evaluate(arch).top1)
            seconds[name] += time.perf_counter() - started
    rate = {k: len(archs) / v for k, v in seconds.items()}
    context = {
        "archs": len(archs),
        "space": space.name,
        "precision": default.precision,
        "recalibration_images": len(default.calibration),
        "eval_images": len(default.labels),
        "processor": platform.processor() or platform.machine(),
    }
    emit("supernet_eval_candidates_per_s", round(rate["default"], 3), "candidates/s", **context)
    emit("supernet_eval_fp32_candidates_per_s", round(rate["fp32"], 3), "candidates/s", **context)
    emit("supernet_eval_speedup_vs_fp32", round(rate["default"] / rate["fp32"], 3), "ratio",
         goal=">= 2", **context)  # fmt: skip
    difference = 100 * np.abs(np.array(top1["default"]) - np.array(top1["fp32"]))
    emit(
        "supernet_eval_top1_difference",
        round(float(difference.mean()), 4),
        "points",
        max_points=round(float(difference.max()), 4),
        kendall_tau=round(float(kendalltau(top1["default"], top1["fp32"]).statistic), 4),
        **context,
    )


if __name__ == "__main__":
    main()
