"""Supernet evaluation throughput: BatchNorm recalibration and validation top-1 per candidate.

Prints one JSON object per figure:
  supernet_eval_candidates_per_s          candidates/s with the evaluator's defaults (precision
                                          "auto": bfloat16 where the CPU or GPU has it natively;
                                          BatchNorm folded into the convolutions)
  supernet_eval_fp32_candidates_per_s     the same archs as the evaluator ran them before: float32,
                                          BatchNorm apart; each path timed in two passes that
                                          bracket the others (fp32, default, actors, default,
                                          fp32)
  supernet_eval_speedup_vs_fp32           the ratio (goal >= 2)
  supernet_eval_top1_difference           what the precision changes: mean and largest
                                          |top-1 difference| in points over the archs, and
                                          Kendall tau between the two measurements
  supernet_eval_actors_candidates_per_s   the same archs measured by --actors Ray actors of one
                                          thread each (`nas predictor fit --workers N`), the
                                          actors started and warmed up first
  supernet_eval_actors_speedup_vs_fp32    its ratio to the float32 in-process rate (goal >= 2)

    python experiments/bench_supernet_eval.py [--checkpoint runs/mnist-supernet] [--archs 40]
        [--recalibration-images N]   (the default evaluator's; the baseline keeps the run's)
        [--actors 2]                 (0: no Ray)

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

from nas.workers import measurement_pool
from supernet.mbconv.checkpoint import load_supernet


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet", type=Path)
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recalibration-images", type=int, default=None)
    parser.add_argument("--actors", type=int, default=2)
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
    # Whole passes over the archs, in the order fp32, default, actors, default, fp32: each
    # path's two passes bracket the others, so a drift of the machine's speed falls on all
    # alike. (Alternating precisions arch by arch would also make oneDNN rebuild kernels
    # that one precision alone keeps cached, and slow both.)
    seconds = {"default": 0.0, "fp32": 0.0}
    top1: dict[str, list[float]] = {}
    pool = measurement_pool(trained.path, trained.sha256, args.actors) if args.actors else None
    try:
        if pool is not None:
            warm_up(pool, archs, args.actors)
        for name in ("fp32", "default", "actors", "default", "fp32"):
            if name == "actors":
                if pool is not None:
                    actors_rate, top1["actors"] = on_actors(pool, archs, trained.space)
                continue
            evaluator = default if name == "default" else fp32
            started = time.perf_counter()
            top1[name] = [evaluator.evaluate(arch).top1 for arch in archs]
            seconds[name] += time.perf_counter() - started
    finally:
        if pool is not None:
            pool.close()
    rate = {k: 2 * len(archs) / v for k, v in seconds.items()}
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
    if pool is not None:
        emit("supernet_eval_actors_candidates_per_s", round(actors_rate, 3), "candidates/s",
             actors=args.actors, **context)  # fmt: skip
        emit("supernet_eval_actors_speedup_vs_fp32", round(actors_rate / rate["fp32"], 3),
             "ratio", goal=">= 2", actors=args.actors, **context)  # fmt: skip
        difference = 100 * np.abs(np.array(top1["actors"]) - np.array(top1["fp32"]))
        emit("supernet_eval_actors_top1_difference", round(float(difference.mean()), 4),
             "points", max_points=round(float(difference.max()), 4), **context)  # fmt: skip


def warm_up(pool: Any, archs: list, actors: int) -> None:
    """Each actor loads the supernet and resizes each resolution's images once."""
    first_of_each_r = list({a["r"]: a for a in reversed(archs)}.values())
    list(pool.measure(first_of_each_r * actors, 1))


def on_actors(pool: Any, archs: list, space: Any) -> tuple[float, list[float]]:
    """Candidates/s of the pool's actors measuring `archs`, and each arch's top-1."""
    started = time.perf_counter()
    results = {r.arch_id: r.top1 for r in pool.measure(archs)}
    seconds = time.perf_counter() - started
    return len(archs) / seconds, [results[space.arch_id(a)] for a in archs]


if __name__ == "__main__":
    main()
