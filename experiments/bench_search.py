"""Search-service figures, each against a baseline measured in the same run.

Prints one JSON object per figure:
  search_candidates_per_s        5,000 candidates evaluated by the predictor and stored in
                                 SQLite by `nas search` (generation batches, one transaction each)
  optuna_rdb_candidates_per_s    the same work through Optuna's own RDB storage on SQLite
  search_speedup_vs_optuna_rdb   the ratio (goal: >= 80; and >= 1,000 candidates/s)
  hypervolume_ratio_vs_random    NSGA-II against random search, same budget, mean of 5 seeds
  hypervolume_ratio_vs_10x_budget  NSGA-II at the demo's budget (search_mnist.yaml) against
                                 NSGA-II with ten times the generations, mean of the seeds
                                 (goal: >= 0.98)
  ray_actor_scaling_2_vs_1       supernet-evaluated candidates/s with 2 Ray actors against 1
                                 (goal: >= 1.8)

    python experiments/bench_search.py [--checkpoint runs/mnist-supernet] [--candidates 5000]

Needs a trained supernet and its predictor (`make demo` or `nas supernet train` + `nas
predictor fit`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from nas.config import ACCURACY
from nas.evaluation import CandidateEvaluator, evaluator_spec
from nas.pareto import load_candidates, non_dominated
from nas.resources import check_search_config
from nas.search import launch_search, limits_of, violations
from nas.store import Store
from nas.workers import RayPool, start_ray

TARGETS = {
    "stm32f746": {"peak_sram_kb": 8, "flash_kb": 450, "latency_ms": 20},
    "h100-sxm": {"latency_ms": 0.28, "batch": 64, "precision": "fp16", "runtime": "tensorrt"},
}
OBJECTIVES = [
    {"metric": "top1", "goal": "maximize"},
    {"metric": "stm32f746.latency_ms", "goal": "minimize"},
]


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def config_for(checkpoint: Path, db: str, population: int, generations: int, **extra: Any):
    raw = {
        "name": "bench",
        "supernet": str(checkpoint / "supernet.pt"),
        "predictor": str(checkpoint / "predictor.pt"),
        "objectives": OBJECTIVES,
        "targets": TARGETS,
        "algorithm": {"population": population, "generations": generations, **extra},
        "evaluation": "predictor",
        "database": db,
    }
    return check_search_config(raw, "bench")


def bench_throughput(checkpoint: Path, candidates: int, rdb_trials: int, workdir: Path) -> None:
    population = 100
    generations = candidates // population
    config = config_for(checkpoint, f"sqlite:///{workdir / 'ours.db'}", population, generations)
    store = Store(config.config.database)
    started = time.perf_counter()
    outcome = launch_search(config, store, progress=False)
    wall = time.perf_counter() - started
    ours = outcome.candidates / wall
    context = {
        "candidates": outcome.candidates,
        "population": population,
        "evaluated": outcome.evaluations,
        "storage": "sqlite",
        "devices": list(TARGETS),
    }
    emit(
        "search_candidates_per_s",
        round(ours, 1),
        "candidates/s",
        goal=">= 1000",
        seconds=round(wall, 2),
        loop_seconds=round(outcome.seconds, 2),
        **context,
    )

    # Baseline: Optuna's RDB storage on the same engine, with the same evaluator and limits.
    evaluator = CandidateEvaluator.of(config.resources)
    space, limits = evaluator.space, limits_of(config.config)
    genes = space.genes()

    def objective(trial: optuna.Trial) -> list[float]:
        arch = space.from_genes({name: trial.suggest_categorical(name, c) for name, c in genes})
        (metrics,) = evaluator.evaluate([arch])
        for lim, value in zip(limits, violations(metrics, limits), strict=True):
            trial.set_constraint(lim.metric, value)
        return [metrics[o.metric] for o in config.config.objectives]

    study = optuna.create_study(
        storage=f"sqlite:///{workdir / 'optuna.db'}",
        directions=[o.goal for o in config.config.objectives],
        sampler=optuna.samplers.NSGAIISampler(population_size=population, seed=0),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=rdb_trials)
    rdb = rdb_trials / (time.perf_counter() - started)
    emit(
        "optuna_rdb_candidates_per_s",
        round(rdb, 2),
        "candidates/s",
        trials=rdb_trials,
        storage="sqlite",
        path="optuna.create_study(storage=...).optimize",
    )
    emit("search_speedup_vs_optuna_rdb", round(ours / rdb, 1), "ratio", goal=">= 80", **context)


def hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by `points` (both columns minimised) and bounded by `reference`."""
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    front = points[non_dominated(points)]
    front = front[np.argsort(front[:, 0])]
    area, previous_y = 0.0, reference[1]
    for x, y in front:
        area += (reference[0] - x) * (previous_y - y)
        previous_y = y
    return float(area)


HV_REFERENCE = np.array([-0.90, TARGETS["stm32f746"]["latency_ms"]])  # top1 >= 90%, the limit


def searched_hypervolume(
    checkpoint: Path, db: str, population: int, generations: int, **algorithm: Any
) -> float:
    """Hypervolume of a search's feasible candidates in (top1, stm32f746 latency)."""
    config = config_for(checkpoint, db, population, generations, **algorithm)
    store = Store(db)
    outcome = launch_search(config, store, progress=False)
    rows = load_candidates(store, outcome.search_id, feasible_only=True)
    points = np.array(
        [[-c.metrics[ACCURACY], c.metrics["stm32f746.latency_ms"]] for c in rows]
    ).reshape(-1, 2)
    return hypervolume_2d(points, HV_REFERENCE)


def bench_hypervolume(checkpoint: Path, candidates: int, seeds: int, workdir: Path) -> None:
    population = 100
    generations = candidates // population
    ratios = []
    for seed in range(seeds):
        volumes = {}
        for sampler in ("nsga2", "random"):
            db = f"sqlite:///{workdir / f'hv-{sampler}-{seed}.db'}"
            volumes[sampler] = searched_hypervolume(
                checkpoint, db, population, generations, sampler=sampler, seed=seed
            )
        ratios.append(volumes["nsga2"] / max(volumes["random"], 1e-12))
        emit(
            "hypervolume_nsga2_vs_random_seed",
            round(ratios[-1], 4),
            "ratio",
            seed=seed,
            nsga2=round(volumes["nsga2"], 6),
            random=round(volumes["random"], 6),
            candidates=candidates,
        )
    emit(
        "hypervolume_ratio_vs_random",
        round(float(np.mean(ratios)), 4),
        "ratio",
        seeds=seeds,
        candidates=candidates,
        objectives=[o["metric"] for o in OBJECTIVES],
        reference={"top1": -HV_REFERENCE[0], "stm32f746.latency_ms": HV_REFERENCE[1]},
        note="feasible candidates only; same limits, same budget",
    )


def bench_budget(checkpoint: Path, seeds: int, workdir: Path) -> None:
    """NSGA-II at the demo's budget (population x generations of experiments/search_mnist.yaml)
    against NSGA-II with ten times as many generations: how much of the front the demo's
    budget finds."""
    demo = yaml.safe_load((Path(__file__).parent / "search_mnist.yaml").read_text())
    population, generations = demo["algorithm"]["population"], demo["algorithm"]["generations"]
    ratios = []
    for seed in range(seeds):
        volumes = {
            factor: searched_hypervolume(
                checkpoint,
                f"sqlite:///{workdir / f'budget-{factor}-{seed}.db'}",
                population,
                generations * factor,
                seed=seed,
            )
            for factor in (1, 10)
        }
        ratios.append(volumes[1] / max(volumes[10], 1e-12))
    emit(
        "hypervolume_ratio_vs_10x_budget",
        round(float(np.mean(ratios)), 4),
        "ratio",
        goal=">= 0.98",
        per_seed=[round(r, 4) for r in ratios],
        population=population,
        generations=[generations, 10 * generations],
        objectives=[o["metric"] for o in OBJECTIVES],
        note="feasible candidates only; hypervolume over top1 >= 90% and the latency limit",
    )


def bench_ray(checkpoint: Path, archs_n: int) -> None:
    config = config_for(checkpoint, "sqlite://", 8, 1)
    resources = config.resources
    spec, space = evaluator_spec(resources, threads=1), resources.artifact.space
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(archs_n)]
    owns = start_ray(None, num_cpus=2)
    rates = {}
    try:
        for workers in (1, 2):
            pool = RayPool(spec, workers)
            try:
                pool.evaluate(archs[: workers * 2], "supernet")  # load the checkpoint, warm up
                started = time.perf_counter()
                pool.evaluate(archs, "supernet")
                rates[workers] = archs_n / (time.perf_counter() - started)
            finally:
                pool.close()
    finally:
        if owns:
            import ray

            ray.shutdown()
    emit(
        "ray_actor_scaling_2_vs_1",
        round(rates[2] / rates[1], 3),
        "ratio",
        one_actor_per_s=round(rates[1], 2),
        two_actors_per_s=round(rates[2], 2),
        candidates=archs_n,
        evaluation="supernet (BN recalibration + validation split)",
        cpus=2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet", type=Path)
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--rdb-trials", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ray-archs", type=int, default=40)
    parser.add_argument("--only", default="throughput,hypervolume,budget,ray")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as tmp:
        workdir = Path(tmp)
        if "throughput" in only:
            bench_throughput(args.checkpoint, args.candidates, args.rdb_trials, workdir)
        if "hypervolume" in only:
            bench_hypervolume(args.checkpoint, args.candidates, args.seeds, workdir)
        if "budget" in only:
            bench_budget(args.checkpoint, args.seeds, workdir)
        if "ray" in only:
            bench_ray(args.checkpoint, args.ray_archs)


if __name__ == "__main__":
    main()
