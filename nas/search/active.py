"""`evaluation: active`: a measurement budget spent where the front is.

Each round is one stored generation; every stored candidate is a measurement on the supernet
(quality_source "supernet"), so the search's front holds measured points only.

* Round 0 measures `active.initial` subnets of a space-filling sample (each choice of each gene
  about equally often; acquisition.stratified_genes).
* Each later round fits a predictor ensemble (K gradient-boosted tree models on bootstrap
  resamples; acquisition.Ensemble) to every measurement for each quality objective; runs the
  search's constrained NSGA-II in memory on the ensemble's mean quality and the exact costs
  (`algorithm.population` x `algorithm.generations`; nothing of it is stored); and measures
  `active.batch` of the archs it evaluated that meet every limit and are not measured yet,
  chosen greedily by the hypervolume each adds to the measured front at its optimistic quality
  (mean + std; acquisition.greedy_batch).
* It stops at `budget` measurements (the last round measures what is left), or when the space
  has no unmeasured subnet that meets the limits.

Costs come from cost models, exact for this loop: a subnet over a limit is never measured.

Resuming after kill -9 measures nothing twice: the round is the number of stored
generations, the measured set the stored candidates, and each round's randomness is seeded
from (algorithm.seed, round). The measured front's hypervolume (acquisition.hypervolume;
reference point and scale from the round-0 measurements, acquisition.reference_point) is
logged, shown in the progress bar and written to the search's message every round.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from nas.config import active_plan
from nas.evaluation import CandidateEvaluator, Metrics
from nas.search import acquisition, records
from nas.search.progress import SearchProgress
from nas.search.runner import SearchRunner
from nas.search.sampler import GenerationSampler, new_study
from nas.search.state import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    INFEASIBLE,
    RUNNING,
    Outcome,
    violations,
)
from supernet.family import PartialMeasurement, images_key
from supernet.space import Arch

log = logging.getLogger(__name__)

# Round 0 draws stratified samples until it has `initial` subnets that meet every limit, at
# most this many draws of `initial` each (a search whose limits few subnets meet).
MAX_SAMPLE_DRAWS = 20


class Measured:
    """The measured archs: their genes, encodings and metrics, in measurement order."""

    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.encoded: list[np.ndarray] = []
        self.metrics: list[Metrics] = []
        self.initial = 0  # how many round 0 measured

    def add(self, params: dict[str, Any], arch_id: str, encoded: np.ndarray, m: Metrics) -> None:
        self.params.append(params)
        self.ids.append(arch_id)
        self.encoded.append(encoded)
        self.metrics.append(m)

    def __len__(self) -> int:
        return len(self.ids)


class ActiveRunner(SearchRunner):
    """The driver of an active search (see the module); built by nas.search.lifecycle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = active_plan(self.config)
        # costs of the inner search's archs, in this process (cost models: cheap)
        self.costs = CandidateEvaluator.of(self.resources)
        self.signs = np.array([-1.0 if o.goal == "maximize" else 1.0 for o in self.objectives])
        self.quality = [
            o.metric
            for o in self.objectives
            if o.metric in self.resources.artifact.family.quality_metrics
        ]

    def _run(self, stop_after_generations: int | None) -> Outcome:
        done = records.generations_done(self.store, self.search_id)
        measured = Measured()
        for row in self._restore(None, done):
            arch = self.space.from_genes(row.params)
            measured.add(row.params, row.arch_id, self.space.encode(arch), row.metrics)
            measured.initial += row.generation == 0
        if done == 0 and (message := self._precheck()) is not None:
            return self._finish(INFEASIBLE, message)
        plan, first = self.plan, self.objectives[0].metric
        hv = self._hypervolume(measured) if len(measured) else 0.0
        with SearchProgress(
            self.search_id,
            self.config.name,
            first,
            plan.rounds,
            done,
            self.state.feasible,
            self.progress,
        ) as bar:
            round_ = done
            while len(measured) < plan.budget:
                if records.status_of(self.store, self.search_id) == CANCELLING:
                    return self._finish(CANCELLED, f"cancelled after {round_} rounds")
                started = time.perf_counter()
                rng = np.random.default_rng([self.config.algorithm.seed, round_])
                n = plan.initial if round_ == 0 else min(plan.batch, plan.budget - len(measured))
                batch = self._initial(n, rng) if round_ == 0 else self._choose(measured, n, rng)
                if not batch:
                    if round_ == 0:
                        return self._finish(INFEASIBLE, self._none_feasible(n))
                    log.info("search %d: no unmeasured subnet meets the limits", self.search_id)
                    break
                hv = self._measure(round_, batch, measured)
                elapsed = time.perf_counter() - started
                self.state.seconds += elapsed
                note = f"front HV {hv:.4f}  measured {len(measured)}/{plan.budget}"
                log.info("search %d round %d: %s", self.search_id, round_, note)
                bar.generation_done(
                    len(batch) / max(elapsed, 1e-9),
                    self.state.feasible,
                    self.state.best.get(first),
                    note,
                )
                round_ += 1
                if self.on_generation is not None:
                    self.on_generation(records.outcome(self.store, self.search_id, RUNNING, ""))
                if stop_after_generations is not None and round_ >= stop_after_generations:
                    return records.outcome(
                        self.store, self.search_id, RUNNING, "stopped (will resume)"
                    )
        return self._finish(
            COMPLETED,
            f"{self.state.summary()}; {len(measured)} measured{self._images_note(measured)} in "
            f"{round_} rounds, measured front hypervolume {hv:.4f}",
        )

    # ----- round 0 ---------------------------------------------------------------------------

    def _initial(
        self, n: int, rng: np.random.Generator, exclude: frozenset[str] = frozenset()
    ) -> list[tuple[dict[str, Any], Arch]]:
        """`n` distinct subnets that meet every limit (and are not in `exclude`), from
        stratified samples."""
        out: dict[str, tuple[dict[str, Any], Arch]] = {}
        for _ in range(MAX_SAMPLE_DRAWS):
            params = acquisition.stratified_genes(self.genes, n, rng)
            archs = [self.space.from_genes(p) for p in params]
            for p, arch, m in zip(params, archs, self.costs.costs(archs), strict=True):
                if self._feasible(m) and self.space.arch_id(arch) not in exclude:
                    out.setdefault(self.space.arch_id(arch), (p, arch))
            if len(out) >= n:
                break
        return list(out.values())[:n]

    def _none_feasible(self, n: int) -> str:
        return (
            f"infeasible: none of {MAX_SAMPLE_DRAWS * n} sampled subnets of {self.space.name} "
            "meets every limit; relax the limits"
        )

    # ----- later rounds ----------------------------------------------------------------------

    def _choose(
        self, measured: Measured, n: int, rng: np.random.Generator
    ) -> list[tuple[dict[str, Any], Arch]]:
        """`n` unmeasured subnets that meet every limit, by optimistic hypervolume improvement
        among those the inner search on the predictor evaluated."""
        x = np.stack(measured.encoded).astype(np.float64)
        models = {
            q: acquisition.Ensemble(x, np.array([m[q] for m in measured.metrics]), rng)
            for q in self.quality
        }
        candidates = self._inner_search(measured, models, rng)
        seen = set(measured.ids)
        ids = [i for i in candidates if i not in seen]
        if len(ids) < n:  # the inner search found too few: fill with a space-filling sample
            extra = self._initial(n - len(ids), rng, frozenset(seen | set(ids)))
            return [candidates[i][:2] for i in ids] + extra
        optimistic = np.array([candidates[i][2] for i in ids])
        spread = np.array([candidates[i][3] for i in ids])
        reference, scale = self._reference(measured)
        picks = acquisition.greedy_batch(
            self._front(measured) / scale, optimistic / scale, spread, reference / scale, n
        )
        return [candidates[ids[i]][:2] for i in picks]

    def _inner_search(
        self, measured: Measured, models: dict[str, acquisition.Ensemble], rng: np.random.Generator
    ) -> dict[str, tuple[dict[str, Any], Arch, np.ndarray, float]]:
        """The constrained NSGA-II on the ensemble's mean quality and the exact costs, in
        memory; returns every distinct arch it evaluated that meets every limit: arch id ->
        (genes, arch, optimistic objective vector (minimization form), total std)."""
        a = self.config.algorithm
        seed = int(rng.integers(2**31 - 1))
        inner = a.model_copy(update={"seed": seed})
        study = new_study(inner, self.distributions, self.objectives, 0, "active")
        sampler = GenerationSampler(study, self.distributions, seed)
        # the measurements first, at their measured values: NSGA-II's first parents are the
        # measured front rather than random draws
        sampler.tell(
            measured.params,
            [[m[o.metric] for o in self.objectives] for m in measured.metrics],
            [self._constraints(m) for m in measured.metrics],
        )
        found: dict[str, tuple[dict[str, Any], Arch, np.ndarray, float]] = {}
        for _ in range(a.generations):
            params = sampler.ask(a.population)
            archs = [self.space.from_genes(p) for p in params]
            metrics = self.costs.costs(archs)
            x = np.stack([self.space.encode(arch) for arch in archs]).astype(np.float64)
            stds = np.zeros(len(archs))
            optimism: dict[str, np.ndarray] = {}
            for q, model in models.items():
                mean, std = model.predict(x)
                for m, value in zip(metrics, mean.tolist(), strict=True):
                    m[q] = float(value)
                optimism[q] = acquisition.OPTIMISM * std
                stds += std
            values = [[m[o.metric] for o in self.objectives] for m in metrics]
            excess = [violations(m, self.limits) for m in metrics]
            sampler.tell(params, values, [self._constraints(m) for m in metrics])
            for k, (p, arch, e) in enumerate(zip(params, archs, excess, strict=True)):
                if any(v > 0 for v in e):
                    continue
                vector = self.signs * np.array(values[k])
                for j, o in enumerate(self.objectives):
                    if o.metric in optimism:  # towards better: down, in minimization form
                        vector[j] -= optimism[o.metric][k]
                found.setdefault(self.space.arch_id(arch), (p, arch, vector, float(stds[k])))
        return found

    # ----- measuring, the front ----------------------------------------------------------------

    def _measure(
        self, round_: int, batch: list[tuple[dict[str, Any], Arch]], measured: Measured
    ) -> float:
        """Measure the batch on the supernet (the pool: Ray actors when workers > 0) and store
        it as the round's generation, with the front's hypervolume (returned) in the search's
        message."""
        archs = [arch for _, arch in batch]
        halving = self.plan.halving
        partial = None if halving is None else self._partial(archs, measured, halving)
        results = self.pool.evaluate(archs, self.quality_source, partial)
        rows = []
        for (params, arch), m in zip(batch, results, strict=True):
            arch_id = self.space.arch_id(arch)
            self.state.cache[arch_id] = m
            self.state.account(m)
            number = len(measured)
            measured.add(params, arch_id, self.space.encode(arch), m)
            measured.initial += round_ == 0
            rows.append(
                records.GenerationRow(number, params, arch, arch_id, m, violations(m, self.limits))
            )
        hv = self._hypervolume(measured)
        message = (
            f"running: round {round_ + 1} of about {self.plan.rounds}, {len(measured)} of "
            f"{self.plan.budget} measured{self._images_note(measured)}, measured front "
            f"hypervolume {hv:.4f}"
        )
        records.store_generation(
            self.store,
            self.search_id,
            round_,
            rows,
            len(rows),
            self.state,
            self.quality_source,
            self.driver,
            message,
        )
        return hv

    def _partial(
        self, archs: list[Arch], measured: Measured, fraction: float
    ) -> PartialMeasurement:
        """Successive halving's plan for a batch, measured on `fraction` of the validation
        split first: the value of the primary quality each arch must beat to join the measured
        front, the best among the front's points that are no worse on every other objective
        (at the arch's exact costs). An arch no such point covers always goes on to the whole
        split; so does all of round 0."""
        primary = self.quality[0]  # the one quality objective (checked with the config)
        q = next(j for j, o in enumerate(self.objectives) if o.metric == primary)
        others = [j for j in range(len(self.objectives)) if j != q]
        front = self._front(measured)
        needed: dict[str, float] = {}
        if len(front):
            costs = self.costs.costs(archs)
            for arch, m in zip(archs, costs, strict=True):
                point = self.signs[others] * [m[self.objectives[j].metric] for j in others]
                covers = (front[:, others] <= point).all(axis=1)
                if covers.any():  # minimization form: the best is the smallest
                    best = front[covers, q].min()
                    needed[self.space.arch_id(arch)] = float(self.signs[q] * best)
        return PartialMeasurement(fraction, needed)

    def _images_note(self, measured: Measured) -> str:
        """How many validation images the measurements used, with successive halving."""
        if self.plan.halving is None:
            return ""
        key = images_key(self.quality[0])
        return f" on {sum(int(m.get(key, 0)) for m in measured.metrics)} validation images"

    def _constraints(self, metrics: Metrics) -> dict[str, float]:
        """The limits' relative excesses, as Optuna's constraints (feasible when <= 0)."""
        excess = violations(metrics, self.limits)
        return {lim.metric: v for lim, v in zip(self.limits, excess, strict=True)}

    def _feasible(self, metrics: Metrics) -> bool:
        return all(v <= 0 for v in violations(metrics, self.limits))

    def _vectors(self, metrics: list[Metrics]) -> np.ndarray:
        """Objective vectors in minimization form."""
        values = np.array([[m[o.metric] for o in self.objectives] for m in metrics], dtype=float)
        return self.signs * values.reshape(-1, len(self.objectives))

    def _front(self, measured: Measured) -> np.ndarray:
        """The measured points that meet every limit (the front is among them)."""
        return self._vectors([m for m in measured.metrics if self._feasible(m)])

    def _reference(self, measured: Measured) -> tuple[np.ndarray, np.ndarray]:
        return acquisition.reference_point(self._vectors(measured.metrics[: measured.initial]))

    def _hypervolume(self, measured: Measured) -> float:
        """The measured front's hypervolume, in units of the initial sample's box."""
        reference, scale = self._reference(measured)
        return acquisition.hypervolume(self._front(measured) / scale, reference / scale)
