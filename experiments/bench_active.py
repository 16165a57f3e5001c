"""How many supernet measurements a front costs: the active search against "random N +
predictor + verify", on the demo's supernet, over several seeds.

Every figure is the hypervolume of a method's *measured* front (top-1 measured on the
supernet against stm32f746 latency, under the limits of experiments/search_mnist_active.yaml),
as a ratio to the front of a reference set of 3,000 random subnets all measured: one
reference point and scale for every method (acquisition.reference_point of the reference
set), so ratios compare across methods and seeds.

Prints one JSON object per figure:
  reference                      the measured reference set: subnets, feasible, front size
  random_predictor_verify        per N (100, 300, 1,000): N of the reference set's subnets
                                 (a random sample), the accuracy predictor fitted on them
                                 (`nas predictor fit`'s model, 20% held out), the demo's
                                 NSGA-II on it (`evaluation: predictor+verify`: the final
                                 front is measured); hypervolume ratio and measurements
  active                         `evaluation: active` (budget, initial 20, batch 20): its
                                 hypervolume ratio per round against measurements
  active_measurements_to_match_random_1000
                                 per seed, the measurements after which the active search's
                                 measured front reaches the hypervolume of the same seed's
                                 random 1,000 + predictor + verify (goal <= 300 on every seed)
  active_halving                 the same with successive halving (`active.halving`), counted
                                 in validation images (and in all images through the network,
                                 BN recalibration included)
  active_halving_images_to_match_random_1000
                                 validation images to reach random 1,000's hypervolume, and
                                 the saving against random 1,000's images
  sampler_gp_vs_nsga2            `evaluation: supernet` at an equal budget of candidates
                                 (default 200: population 20 x 10 generations): the GP sampler
                                 against NSGA-II, hypervolume ratio per seed

    python experiments/bench_active.py --checkpoint runs/mnist-supernet-quick [--seeds 5]
        [--only reference,random,active,halving,samplers] [--work runs/bench-active]

Resumable: each finished run's figures are kept in WORK/results/ (and its search in
WORK/bench.db), and a rerun skips it; the reference set's measurements are the predictor
fit's cache beside the checkpoint (`nas predictor fit --n 3000` fills it). Runs are
in-process (workers: 0) so that measurements do not compete with each other for 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nas import core
from nas.config import limits_of
from nas.evaluation import CandidateEvaluator
from nas.resources import check_search_config
from nas.search import acquisition
from nas.search.state import violations
from supernet.family import open_artifact
from supernet.mbconv.predictor import Measurement, fit_predictor, measure_archs

EXAMPLE = Path(__file__).parent / "search_mnist_active.yaml"
OBJECTIVES = ("top1", "stm32f746.latency_ms")  # maximize, minimize
SIGNS = np.array([-1.0, 1.0])  # to minimization form
HELD_OUT_FRACTION = 0.2  # as `make demo` fits its predictor (1,000 archs, 200 held out)
ALL_FIGURES = ("reference", "random", "active", "halving", "samplers")


def emit(name: str, **figures: Any) -> None:
    print(json.dumps({"name": name, **figures}), flush=True)


@dataclass(frozen=True)
class Reference:
    """The measured reference set: its feasible objective vectors, and the hypervolume's
    reference point, scale and its front's volume (in that scale)."""

    measured: list[Measurement]
    feasible: np.ndarray
    point: np.ndarray
    scale: np.ndarray
    volume: float


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        (self.work / "results").mkdir(parents=True, exist_ok=True)
        self.db = f"sqlite:///{(self.work / 'bench.db').resolve()}"
        self.checkpoint = Path(args.checkpoint).resolve()
        self.opened = open_artifact(self.checkpoint)
        self.trained = self.opened.trained()
        self.space = self.opened.space
        example = yaml.safe_load(EXAMPLE.read_text())
        example.update(supernet=str(self.opened.path), database=self.db, workers=0)
        self.example = example
        checked = check_search_config(self.base(evaluation="supernet"))
        self.limits = limits_of(checked.config)
        self.costs = CandidateEvaluator.of(checked.resources)
        self.val_images = len(self.trained.dataset().val)
        self.recalibration_images = int(self.trained.meta.get("bn_recalibration_images", 500))
        self._reference: Reference | None = None

    # ----- configs and results ---------------------------------------------------------------

    def base(self, **update: Any) -> dict[str, Any]:
        """The example config, without its active-search fields unless `update` sets them."""
        raw = {k: v for k, v in self.example.items() if k not in ("budget", "active")}
        raw["algorithm"] = dict(raw["algorithm"])
        for key, value in update.items():
            if key == "algorithm":
                raw["algorithm"].update(value)
            else:
                raw[key] = value
        return raw

    def cached(self, key: str, run: Any) -> dict[str, Any]:
        """A run's figures, from WORK/results/KEY.json when a past run of the bench kept
        them (the same checkpoint), else from `run()` (then kept)."""
        path = self.work / "results" / f"{key}.json"
        if path.exists():
            kept = json.loads(path.read_text())
            if kept.get("supernet_sha256") == self.opened.sha256:
                return kept
        started = time.perf_counter()
        figures = {**run(), "seconds": round(time.perf_counter() - started, 1)}
        figures["supernet_sha256"] = self.opened.sha256
        path.write_text(json.dumps(figures))
        return figures

    # ----- the reference set and hypervolume --------------------------------------------------

    def reference(self) -> Reference:
        """The reference set, measured once (the predictor fit's cache), and costed once."""
        if self._reference is None:
            measured = measure_archs(self.trained, self.args.reference, seed=0, progress=True)
            vectors = self.vectors([m.arch for m in measured], [m.top1 for m in measured])
            feasible = vectors[~np.isnan(vectors).any(axis=1)]
            ref, scale = acquisition.reference_point(feasible)
            volume = acquisition.hypervolume(feasible / scale, ref / scale)
            self._reference = Reference(measured, feasible, ref, scale, volume)
        return self._reference

    def vectors(self, archs: Sequence[dict[str, Any]], top1: Sequence[float]) -> np.ndarray:
        """(-top1, latency) per arch; NaN for an arch over a limit (it adds nothing)."""
        out = np.full((len(archs), 2), np.nan)
        for start in range(0, len(archs), 500):
            chunk = archs[start : start + 500]
            for k, m in enumerate(self.costs.costs(chunk), start):
                m["top1"] = float(top1[k])
                if all(v <= 0 for v in violations(m, self.limits)):
                    out[k] = SIGNS * np.array([m[o] for o in OBJECTIVES])
        return out

    def hv_ratio(self, vectors: np.ndarray) -> float:
        """The hypervolume of `vectors`' feasible points over the reference set's front's."""
        reference = self.reference()
        points = vectors[~np.isnan(vectors).any(axis=1)]
        scale = reference.scale
        volume = acquisition.hypervolume(points / scale, reference.point / scale)
        return volume / reference.volume

    # ----- the methods -------------------------------------------------------------------------

    def random(self, n: int, seed: int) -> dict[str, Any]:
        measured = self.reference().measured
        picked = [measured[i] for i in np.random.default_rng(seed).permutation(len(measured))[:n]]
        held_out = max(2, round(HELD_OUT_FRACTION * n))
        predictor = fit_predictor(self.space, picked, self.opened.sha256, held_out, seed=seed)
        path = predictor.save(self.work / "predictors" / f"random-{n}-seed{seed}.pt")
        config = self.base(
            name=f"random-{n}-seed{seed}",
            evaluation="predictor+verify",
            predictor=str(path),
            algorithm={"seed": seed},
        )
        outcome = core.launch(config, db=self.db)
        items = self.candidates(outcome.search_id)
        verified = {r["arch_id"]: r for r in items if r.get("top1_measured") is not None}
        archs = [m.arch for m in picked] + [r["arch"] for r in verified.values()]
        top1 = [m.top1 for m in picked] + [r["top1_measured"] for r in verified.values()]
        new = len(set(verified) - {m.arch_id for m in picked})
        return {
            "search_id": outcome.search_id,
            "measurements": n + new,
            "verified": len(verified),
            "hv_ratio": self.hv_ratio(self.vectors(archs, top1)),
            "val_images": (n + new) * self.val_images,
            "all_images": (n + new) * (self.val_images + self.recalibration_images),
        }

    def active(self, seed: int, halving: float | None) -> dict[str, Any]:
        options: dict[str, Any] = {"initial": 20, "batch": 20}
        if halving is not None:
            options["halving"] = halving
        config = self.base(
            name=f"active{'-halving' if halving else ''}-seed{seed}",
            evaluation="active",
            budget=self.args.budget,
            active=options,
            algorithm={"seed": seed},
        )
        outcome = core.launch(config, db=self.db)
        items = self.candidates(outcome.search_id)
        curve = []
        val_images = all_images = 0
        for round_ in sorted({r["generation"] for r in items}):
            done = [r for r in items if r["generation"] <= round_]
            this = [r for r in items if r["generation"] == round_]
            used = [r.get("top1_images", self.val_images) for r in this]
            val_images += int(sum(used))
            all_images += int(sum(used)) + len(this) * self.recalibration_images
            vectors = self.vectors([r["arch"] for r in done], [r["top1"] for r in done])
            curve.append(
                {
                    "round": round_,
                    "measurements": len(done),
                    "val_images": val_images,
                    "all_images": all_images,
                    "hv_ratio": round(self.hv_ratio(vectors), 4),
                }
            )
        stopped = sum(1 for r in items if r.get("top1_images", self.val_images) < self.val_images)
        return {"search_id": outcome.search_id, "curve": curve, "stopped_early": stopped}

    def sampler(self, sampler: str, seed: int) -> dict[str, Any]:
        population = 20
        config = self.base(
            name=f"{sampler}-seed{seed}",
            evaluation="supernet",
            algorithm={
                "sampler": sampler,
                "seed": seed,
                "population": population,
                "generations": self.args.sampler_budget // population,
            },
        )
        outcome = core.launch(config, db=self.db)
        items = self.candidates(outcome.search_id)
        vectors = self.vectors([r["arch"] for r in items], [r["top1"] for r in items])
        return {
            "search_id": outcome.search_id,
            "measurements": len({r["arch_id"] for r in items}),
            "hv_ratio": self.hv_ratio(vectors),
        }

    def candidates(self, search_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = core.list_candidates(search_id, offset=len(out), limit=1000, db=self.db)
            out += page["items"]
            if len(out) >= page["total"] or not page["items"]:
                return out


def first_reaching(curve: list[dict[str, Any]], hv: float, key: str) -> int | None:
    """The `key` count (measurements or images) after the first round whose front reaches
    `hv`; None when no round does."""
    return next((point[key] for point in curve if point["hv_ratio"] >= hv), None)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "min": round(float(np.min(values)), 4),
        "max": round(float(np.max(values)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet-quick")
    parser.add_argument("--work", default="runs/bench-active")
    parser.add_argument(
        "--seeds",
        default="5",
        help="a count N (seeds 0..N-1) or a comma list of seeds (e.g. to split the runs "
        "between processes: each keeps its results in WORK/results/)",
    )
    parser.add_argument("--reference", type=int, default=3000)
    parser.add_argument("--random", default="100,300,1000", help="the N of random N + verify")
    parser.add_argument("--budget", type=int, default=300, help="the active search's budget")
    parser.add_argument("--halving", type=float, default=0.25)
    parser.add_argument("--sampler-budget", type=int, default=200)
    parser.add_argument("--only", default=",".join(ALL_FIGURES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only.split(","))
    bench = Bench(args)
    listed = [int(v) for v in args.seeds.split(",") if v.strip()]
    seeds = listed if "," in args.seeds else range(int(args.seeds))

    reference = bench.reference()
    emit(
        "reference",
        subnets=len(reference.measured),
        feasible=len(reference.feasible),
        front=int(acquisition.non_dominated(reference.feasible).sum()),
        objectives=list(OBJECTIVES),
    )

    random_hv: dict[int, dict[int, float]] = {}
    if only & {"random", "active", "halving"}:
        for n in (int(v) for v in args.random.split(",")):
            runs = [
                bench.cached(f"random-{n}-seed{s}", lambda n=n, s=s: bench.random(n, s))
                for s in seeds
            ]
            random_hv[n] = {s: r["hv_ratio"] for s, r in zip(seeds, runs, strict=True)}
            emit(
                "random_predictor_verify",
                n=n,
                hv_ratio=summary([r["hv_ratio"] for r in runs]),
                measurements=summary([r["measurements"] for r in runs]),
                per_seed=[round(r["hv_ratio"], 4) for r in runs],
            )

    for kind, halving in (("active", None), ("halving", args.halving)):
        if kind not in only:
            continue
        name = "active" if halving is None else "active_halving"
        runs = [
            bench.cached(f"{name}-{args.budget}-seed{s}", lambda s=s, h=halving: bench.active(s, h))
            for s in seeds
        ]
        final = [r["curve"][-1] for r in runs]
        emit(
            name,
            budget=args.budget,
            halving=halving,
            hv_ratio=summary([f["hv_ratio"] for f in final]),
            val_images=summary([f["val_images"] for f in final]),
            stopped_early=summary([r["stopped_early"] for r in runs]),
            curve_seed0=runs[0]["curve"],
        )
        if 1000 not in random_hv:
            continue
        key = "measurements" if halving is None else "val_images"
        reached = [
            first_reaching(r["curve"], random_hv[1000][s], key)
            for s, r in zip(seeds, runs, strict=True)
        ]
        mean_random = float(np.mean(list(random_hv[1000].values())))
        if halving is None:
            emit(
                "active_measurements_to_match_random_1000",
                per_seed=reached,
                worst=None if None in reached else max(reached),
                goal=300,
                met=None not in reached and max(reached) <= 300,
                # against the mean of random 1,000's seeds rather than the same seed's
                per_seed_vs_mean=[first_reaching(r["curve"], mean_random, key) for r in runs],
            )
        else:
            random_images = 1000 * bench.val_images
            emit(
                "active_halving_images_to_match_random_1000",
                per_seed=reached,
                random_1000_val_images=random_images,
                saving=None if None in reached else round(random_images / max(reached), 2),
                all_images_per_seed=[
                    first_reaching(r["curve"], random_hv[1000][s], "all_images")
                    for s, r in zip(seeds, runs, strict=True)
                ],
            )

    if "samplers" in only:
        figures = {}
        for sampler in ("nsga2", "gp"):
            runs = [
                bench.cached(
                    f"sampler-{sampler}-{args.sampler_budget}-seed{s}",
                    lambda sampler=sampler, s=s: bench.sampler(sampler, s),
                )
                for s in seeds
            ]
            figures[sampler] = [r["hv_ratio"] for r in runs]
        emit(
            "sampler_gp_vs_nsga2",
            budget=args.sampler_budget,
            gp=summary(figures["gp"]),
            nsga2=summary(figures["nsga2"]),
            gp_over_nsga2=round(float(np.mean(figures["gp"]) / np.mean(figures["nsga2"])), 4),
            per_seed_gp=[round(v, 4) for v in figures["gp"]],
            per_seed_nsga2=[round(v, 4) for v in figures["nsga2"]],
        )


if __name__ == "__main__":
    main()
