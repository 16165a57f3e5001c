"""The constrained evolutionary search loop: one generation at a time.

Each generation is drawn from the sampler as a whole (nas.search.sampler), evaluated as one
batch (each distinct arch once: results are cached by arch id) and told back as finished
trials, with every device limit given to Optuna as a constraint: the relative excess
(value - limit) / limit, feasible when <= 0. Then the generation's candidates and metrics,
and the search's progress, are written in one transaction (nas.search.records). Optuna's own
RDB storage would make ~23 commits per trial.

A search in which no candidate meets every limit ends with status `infeasible`, naming the
tightest limit and the best value seen; if even the smallest subnet of the space exceeds a
limit, it ends before the first generation.

The driver holds the search's lease (nas.search.lifecycle): renewed when it starts, by a
heartbeat thread, and in every write. A driver whose lease was taken over stops at its next
write, leaving the search's rows and status to the new driver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import optuna
from optuna.distributions import CategoricalDistribution

from nas.config import SearchConfig
from nas.errors import LeaseLost
from nas.pareto import pareto_front
from nas.resources import SearchResources
from nas.search import records
from nas.search.progress import SearchProgress
from nas.search.sampler import GenerationSampler, new_study, study_seed
from nas.search.state import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    INFEASIBLE,
    RUNNING,
    Outcome,
    SearchState,
    limits_of,
    violations,
)
from nas.store import Search, Store, lease
from nas.workers import EvaluatorPool, make_pool
from supernet.space import Arch

log = logging.getLogger(__name__)


class SearchRunner:
    """Drives one stored search; built by nas.search.lifecycle (launch or resume)."""

    def __init__(
        self,
        store: Store,
        search_id: int,
        config: SearchConfig,
        resources: SearchResources,
        pool: EvaluatorPool | None = None,
        progress: bool = True,
        on_generation: Callable[[Outcome], None] | None = None,
        driver: str | None = None,
    ) -> None:
        self.store, self.search_id, self.config = store, search_id, config
        if driver is None:  # the driver recorded in the row (launch and reopen pass theirs)
            with store.session() as s:
                driver = store.search(s, search_id).driver
        self.driver = driver
        self.resources = resources
        self.space = resources.artifact.space
        self.domain = resources.domain
        # the sampler draws only archs every target can cost (nas.domain)
        self.genes = [
            (name, self.domain.choices if self.domain and name == self.domain.gene else choices)
            for name, choices in self.space.genes()
        ]
        self.distributions = {name: CategoricalDistribution(c) for name, c in self.genes}
        self.limits = limits_of(config)
        self.objectives = config.objectives
        # "supernet": measured with the trained network (for a GAN: its generator)
        self.quality_source = "supernet" if config.measures else "predictor"
        # the evaluators: given, or built when the search runs (`run`), in this process:
        # a pool of Ray actors starts Ray only where the search is evaluated
        self._own_pool = pool is None
        self.pool: EvaluatorPool | None = pool
        self.progress, self.on_generation = progress, on_generation
        self.state = SearchState(self.limits, self.objectives)

    def run(self, stop_after_generations: int | None = None) -> Outcome:
        lost = False
        try:
            if self.pool is None:
                self.pool = make_pool(self.resources, self.config.workers, self.config.ray_address)
            what = f"search {self.search_id}"
            renew = partial(lease.renew, self.store, Search, self.search_id, self.driver, what)
            renew()
            with lease.heartbeat(renew, what):
                return self._run(stop_after_generations)
        except LeaseLost as err:  # another driver runs the search now: leave it be
            lost = True
            log.warning("%s", err)
            raise
        except BaseException as err:
            if not isinstance(err, KeyboardInterrupt):
                try:
                    self._finish(FAILED, f"failed: {type(err).__name__}: {err}")
                except LeaseLost:
                    lost = True
            raise
        finally:
            if self._own_pool and self.pool is not None:
                self.pool.close()
                self.pool = None
            if not lost:
                try:
                    lease.release(self.store, Search, self.search_id, self.driver)
                except Exception as err:  # the lease then runs out by itself
                    log.warning("search %d: cannot release its lease: %s", self.search_id, err)

    def _run(self, stop_after_generations: int | None) -> Outcome:
        a = self.config.algorithm
        done = records.generations_done(self.store, self.search_id)
        study = new_study(a, self.distributions, self.objectives, done, self.config.evaluation)
        self._restore(study, done)
        sampler = GenerationSampler(study, self.distributions, study_seed(a, done))
        if done == 0 and (message := self._precheck()) is not None:
            return self._finish(INFEASIBLE, message)
        first = self.objectives[0].metric
        with SearchProgress(
            self.search_id,
            self.config.name,
            first,
            a.generations,
            done,
            self.state.feasible,
            self.progress,
        ) as bar:
            for generation in range(done, a.generations):
                if records.status_of(self.store, self.search_id) == CANCELLING:
                    return self._finish(CANCELLED, f"cancelled after {generation} generations")
                started = time.perf_counter()
                self._generation(sampler, generation)
                elapsed = time.perf_counter() - started
                self.state.seconds += elapsed
                bar.generation_done(
                    a.population / max(elapsed, 1e-9),
                    self.state.feasible,
                    self.state.best.get(first),
                )
                if self.on_generation is not None:
                    self.on_generation(records.outcome(self.store, self.search_id, RUNNING, ""))
                if stop_after_generations is not None and generation + 1 >= stop_after_generations:
                    return records.outcome(
                        self.store, self.search_id, RUNNING, "stopped (will resume)"
                    )
        if self.state.feasible == 0:
            return self._finish(INFEASIBLE, self.state.infeasible_message())
        if self.config.evaluation == "predictor+verify":
            self._verify_front()
        return self._finish(COMPLETED, self.state.summary())

    def _restore(
        self, study: optuna.Study | None, generations_done: int
    ) -> list[records.StoredCandidate]:
        """Rebuild the state (cache, counts, best values) from the stored candidates, and
        re-add them to a fresh study (if any) as finished trials; returns them."""
        stored, self.state.seconds = records.stored_candidates(
            self.store, self.search_id, generations_done
        )
        for row in stored:
            self.state.cache[row.arch_id] = row.metrics
            self.state.account(row.metrics)
            if study is None:
                continue
            excess = violations(row.metrics, self.limits)
            study.add_trial(
                optuna.trial.create_trial(
                    params=row.params,
                    distributions=self.distributions,
                    values=[row.metrics[o.metric] for o in self.objectives],
                    constraints={lim.metric: v for lim, v in zip(self.limits, excess, strict=True)},
                )
            )
        return stored

    def _precheck(self) -> str | None:
        """If the smallest subnet exceeds a limit, no subnet is expected to meet it (every cost
        here grows with every gene): end before spending a generation."""
        smallest = self.space.smallest()
        if self.domain is not None:
            smallest = self.space.at_resolution(smallest, min(self.domain.choices))
        (metrics,) = self.pool.evaluate([smallest], quality=None)
        for lim in self.limits:
            if lim.value_of(metrics) > lim.value:
                return (
                    f"infeasible: the smallest subnet of {self.space.name} already has "
                    f"{lim.checked} = {lim.value_of(metrics):.4g} > limit {lim.value:.4g}; no "
                    "subnet can meet it. Relax that limit or use a smaller space."
                )
        return None

    def _generation(self, sampler: GenerationSampler, generation: int) -> None:
        a = self.config.algorithm
        params = sampler.ask(a.population)
        # Optuna's parameters are an edge: validated here once, trusted from here on.
        archs = [self.space.from_genes(p) for p in params]
        ids = [self.space.arch_id(arch) for arch in archs]
        new: dict[str, Arch] = {}
        for arch_id, arch in zip(ids, archs, strict=True):
            if arch_id not in self.state.cache:
                new.setdefault(arch_id, arch)
        if new:
            results = self.pool.evaluate(list(new.values()), self.quality_source)
            self.state.cache.update(zip(new, results, strict=True))
        metrics = [self.state.cache[arch_id] for arch_id in ids]
        excess = [violations(m, self.limits) for m in metrics]
        numbers = sampler.tell(
            params,
            [[m[o.metric] for o in self.objectives] for m in metrics],
            [{lim.metric: v for lim, v in zip(self.limits, e, strict=True)} for e in excess],
        )
        rows = []
        for number, p, arch, arch_id, m, e in zip(
            numbers, params, archs, ids, metrics, excess, strict=True
        ):
            self.state.account(m)
            rows.append(records.GenerationRow(number, p, arch, arch_id, m, e))
        records.store_generation(
            self.store,
            self.search_id,
            generation,
            rows,
            len(new),
            self.state,
            self.quality_source,
            self.driver,
        )

    def _verify_front(self) -> None:
        """predictor+verify: measure the final front's archs with the supernet."""
        front = pareto_front(self.store, self.search_id).front
        archs = {c.arch_id: self.space.validate(c.arch) for c in front}  # SQL rows: an edge
        log.info("verifying the %d archs of the front with the supernet", len(archs))
        measured = self.pool.evaluate(list(archs.values()), "supernet")
        quality = self.resources.artifact.family.quality_metrics
        records.store_measured(
            self.store,
            self.search_id,
            {
                arch_id: {k: v for k, v in m.items() if k in quality}
                for arch_id, m in zip(archs, measured, strict=True)
            },
            self.driver,
        )

    def _finish(self, status: str, message: str) -> Outcome:
        log.info("search %d %s", self.search_id, message)
        return records.finish(self.store, self.search_id, status, message, self.driver)
