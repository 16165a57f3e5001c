"""The constrained evolutionary search: Optuna's NSGA-II in memory, one SQL transaction per
generation.

Each generation is asked from the sampler as a whole, evaluated as one batch (each distinct
arch once: results are cached by arch id) and told back, with every device limit given to
Optuna through `Trial.set_constraint` as a relative excess ((value - limit) / limit, feasible
when <= 0). Then the generation's candidates and metrics, and the search's progress, are
written in one transaction. Optuna's own RDB storage would make ~23 commits per trial.

A driver killed at any moment (kill -9) loses at most the generation in flight: `resume`
rebuilds the study from the stored rows and continues. `cancel` asks a running driver to stop
after its current generation. A search in which no candidate meets every limit ends with
status `infeasible`, naming the tightest limit and the best value seen; if even the smallest
subnet of the space exceeds a limit, it ends before the first generation.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import insert, select, update

from nas.config import ACCURACY, SearchConfig, join_metric, split_metric
from nas.errors import SearchError
from nas.evaluation import EvaluatorSpec, Metrics, supernet_space
from nas.pareto import pareto_front
from nas.store import Candidate, Metric, Predictor, Search, Store, Supernet
from nas.workers import EvaluatorPool, make_pool
from supernet.io import file_sha256
from supernet.space import Arch, SearchSpace

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

RUNNING, CANCELLING, CANCELLED = "running", "cancelling", "cancelled"
COMPLETED, INFEASIBLE, FAILED = "completed", "infeasible", "failed"
FINAL = (CANCELLED, COMPLETED, INFEASIBLE)


class GenerationalNSGAII(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, told two facts about this loop through its public sampler methods.

    The loop asks whole generations, so trial n belongs to generation n // population (stored
    trials are re-added in order on resume, keeping that true); and the search space is the
    space's fixed genes. Optuna would otherwise infer both again for every trial, by
    scanning every earlier trial and deep-copying the search space: quadratic in the
    number of trials, about 60% of the driver's time at 5,000 candidates.
    """

    def __init__(self, search_space: dict[str, CategoricalDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._genes = {n: d for n, d in search_space.items() if not d.single()}

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
        return self._genes

    def get_trial_generation(self, study: optuna.Study, trial: Any) -> int:
        return trial.number // self.population_size

    def get_population(self, study: optuna.Study, generation: int) -> list[Any]:
        return [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number // self.population_size == generation
        ]


@dataclass
class Outcome:
    search_id: int
    status: str
    message: str
    generations_done: int
    generations_total: int
    candidates: int
    evaluations: int
    feasible: int
    best: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Limit:
    metric: str  # "device.metric"
    value: float


@dataclass
class _State:
    """What the driver tracks between generations (rebuilt from SQL on resume)."""

    cache: dict[str, Metrics] = field(default_factory=dict)  # arch id -> metrics
    candidates: int = 0
    feasible: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_seen: dict[str, float] = field(default_factory=dict)  # limit metrics, feasible or not
    seconds: float = 0.0


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> datetime:
    return datetime.now(UTC)


def limits_of(config: SearchConfig) -> list[Limit]:
    return [
        Limit(f"{device}.{name}", value)
        for device, target in config.targets.items()
        for name, value in target.limits.items()
    ]


def violations(metrics: Metrics, limits: Sequence[Limit]) -> list[float]:
    return [(metrics[lim.metric] - lim.value) / lim.value for lim in limits]


def register_artifacts(
    store: Store, config: SearchConfig, space: SearchSpace
) -> tuple[int, int | None]:
    """Rows for the supernet and predictor files (by SHA-256), shared by searches."""
    supernet_sha = file_sha256(config.supernet)
    with store.session() as s:
        row = s.scalar(select(Supernet).where(Supernet.sha256 == supernet_sha))
        if row is None:
            row = Supernet(sha256=supernet_sha, path=str(config.supernet), space=space.name)
            s.add(row)
            s.flush()
        supernet_id = row.id
        predictor_id = None
        if config.predictor:
            from supernet.mbconv.predictor import load_predictor

            predictor = load_predictor(config.predictor, config.supernet)  # refuses a mismatch
            sha = file_sha256(config.predictor)
            prow = s.scalar(select(Predictor).where(Predictor.sha256 == sha))
            if prow is None:
                prow = Predictor(
                    sha256=sha,
                    path=str(config.predictor),
                    supernet_id=supernet_id,
                    metrics=predictor.metrics,
                )
                s.add(prow)
                s.flush()
            predictor_id = prow.id
    return supernet_id, predictor_id


class SearchRunner:
    """Drives one search; build with `launch` or `resume`."""

    def __init__(
        self,
        store: Store,
        search_id: int,
        config: SearchConfig,
        pool: EvaluatorPool | None = None,
        progress: bool = True,
        on_generation: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.store, self.search_id, self.config = store, search_id, config
        self.space = supernet_space(config.supernet)
        self.genes = self.space.genes()
        self.distributions = {name: CategoricalDistribution(c) for name, c in self.genes}
        self.limits = limits_of(config)
        self.objectives = config.objectives
        # "supernet": measured with the trained network (for a GAN: its generator)
        self.quality_source = "supernet" if config.evaluation == "supernet" else "predictor"
        self._own_pool = pool is None
        self.pool = pool or make_pool(
            EvaluatorSpec.from_config(config), config.workers, config.ray_address
        )
        self.progress, self.on_generation = progress, on_generation
        self.state = _State()

    # ----- creating and reopening -----------------------------------------------------------

    @classmethod
    def launch(
        cls, config: SearchConfig, store: Store | None = None, **kwargs: Any
    ) -> SearchRunner:
        store = store or Store(config.database)
        space = supernet_space(config.supernet)
        if config.space and config.space != space.name:
            raise SearchError(
                f"config names space {config.space!r} but supernet {config.supernet} is "
                f"{space.name!r}"
            )
        supernet_id, predictor_id = register_artifacts(store, config, space)
        with store.session() as s:
            row = Search(
                name=config.name,
                status=RUNNING,
                config=config.model_dump(mode="json"),
                space=space.name,
                supernet_id=supernet_id,
                predictor_id=predictor_id,
                generations_total=config.algorithm.generations,
                driver=driver_id(),
            )
            s.add(row)
            s.flush()
            search_id = row.id
        log.info("search %d (%s) created in %s", search_id, config.name, store.url)
        return cls(store, search_id, config, **kwargs)

    @classmethod
    def reopen(
        cls, search_id: int, store: Store, force: bool = False, **kwargs: Any
    ) -> SearchRunner:
        with store.session() as s:
            row = _unfinished(s, search_id, store)
            host, _, pid = row.driver.partition(":")
            if (
                row.status == RUNNING
                and not force
                and host == socket.gethostname()
                and pid.isdigit()
                and int(pid) != os.getpid()
                and _process_alive(int(pid))
            ):
                raise SearchError(
                    f"search {search_id} is still being run by process {pid}; "
                    "stop it first (or pass --force)"
                )
            row.driver = driver_id()
            config = SearchConfig(**row.config)
        return cls(store, search_id, config, **kwargs)

    # ----- the loop ---------------------------------------------------------------------------

    def _new_study(self, generations_done: int) -> optuna.Study:
        a = self.config.algorithm
        # A resumed driver continues with a seed of its own: the sampler's random state in
        # the dead process cannot be recovered, only its trials.
        seed = a.seed + 1000 * generations_done
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.RandomSampler(seed=seed)
            if a.sampler == "random"
            else GenerationalNSGAII(
                self.distributions,
                population_size=a.population,
                mutation_prob=a.mutation_prob,
                crossover_prob=a.crossover_prob,
                swapping_prob=a.swapping_prob,
                seed=seed,
            )
        )
        directions = [o.goal for o in self.objectives]
        return optuna.create_study(directions=directions, sampler=sampler)

    def _generations_done(self) -> int:
        with self.store.session() as s:
            return s.get(Search, self.search_id).generations_done

    def _restore(self, study: optuna.Study, generations_done: int) -> None:
        """Re-add the stored candidates to a fresh study as finished trials."""
        with self.store.session() as s:
            rows = (
                s.execute(
                    select(Candidate)
                    .where(Candidate.search_id == self.search_id)
                    .order_by(Candidate.trial)
                )
                .scalars()
                .all()
            )
            metric_rows = s.execute(
                select(Metric.candidate_id, Metric.device, Metric.name, Metric.value).where(
                    Metric.search_id == self.search_id
                )
            ).all()
            self.state.seconds = s.get(Search, self.search_id).seconds
        per_candidate: dict[int, Metrics] = {}
        for cid, device, name, value in metric_rows:
            per_candidate.setdefault(cid, {})[join_metric(device, name)] = value
        for row in rows:
            if row.generation >= generations_done:
                continue  # a generation is stored whole or not at all; defensive
            metrics = per_candidate.get(row.id, {})
            if row.top1 is not None:  # classifiers; a generator's quality is in `metrics`
                metrics[ACCURACY] = row.top1
            self.state.cache[row.arch_id] = metrics
            self._account(metrics)
            study.add_trial(
                optuna.trial.create_trial(
                    params=row.params,
                    distributions=self.distributions,
                    values=[metrics[o.metric] for o in self.objectives],
                    constraints={
                        lim.metric: v
                        for lim, v in zip(
                            self.limits, violations(metrics, self.limits), strict=True
                        )
                    },
                )
            )

    def _account(self, metrics: Metrics) -> None:
        feasible = all(v <= 0 for v in violations(metrics, self.limits))
        self.state.candidates += 1
        for lim in self.limits:
            seen = self.state.best_seen.get(lim.metric)
            value = metrics[lim.metric]
            self.state.best_seen[lim.metric] = value if seen is None else min(seen, value)
        if not feasible:
            return
        self.state.feasible += 1
        for o in self.objectives:
            value, best = metrics[o.metric], self.state.best.get(o.metric)
            better = best is None or (value > best if o.goal == "maximize" else value < best)
            if better:
                self.state.best[o.metric] = value

    def _precheck(self) -> str | None:
        """If the smallest subnet exceeds a limit, no subnet is expected to meet it (every cost
        here grows with every gene): end before spending a generation."""
        (metrics,) = self.pool.evaluate([self.space.smallest()], quality=None)
        for lim in self.limits:
            if metrics[lim.metric] > lim.value:
                return (
                    f"infeasible: the smallest subnet of {self.space.name} already has "
                    f"{lim.metric} = {metrics[lim.metric]:.4g} > limit {lim.value:.4g}; no subnet "
                    "can meet it. Relax that limit or use a smaller space."
                )
        return None

    def run(self, stop_after_generations: int | None = None) -> Outcome:
        try:
            return self._run(stop_after_generations)
        except BaseException as err:
            if not isinstance(err, KeyboardInterrupt):
                self._finish(FAILED, f"failed: {type(err).__name__}: {err}")
            raise
        finally:
            if self._own_pool:
                self.pool.close()

    def _run(self, stop_after_generations: int | None) -> Outcome:
        a = self.config.algorithm
        done = self._generations_done()
        study = self._new_study(done)
        self._restore(study, done)
        if done == 0 and (message := self._precheck()) is not None:
            return self._finish(INFEASIBLE, message)
        columns = (
            TextColumn(f"[bold]search {self.search_id}[/] {self.config.name}"),
            BarColumn(),
            TextColumn("gen {task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]:.0f} cand/s  feasible {task.fields[feasible]}"),
            TextColumn(f"best {self.objectives[0].metric} " + "{task.fields[best]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, disable=not self.progress) as bar:
            task = bar.add_task(
                "search",
                total=a.generations,
                completed=done,
                rate=0.0,
                feasible=self.state.feasible,
                best="-",
            )
            for generation in range(done, a.generations):
                if self._status() == CANCELLING:
                    return self._finish(CANCELLED, f"cancelled after {generation} generations")
                started = time.perf_counter()
                self._generation(study, generation)
                elapsed = time.perf_counter() - started
                self.state.seconds += elapsed
                best = self.state.best.get(self.objectives[0].metric)
                bar.update(
                    task,
                    advance=1,
                    rate=a.population / max(elapsed, 1e-9),
                    feasible=self.state.feasible,
                    best="-" if best is None else f"{best:.4g}",
                )
                if self.on_generation is not None:
                    self.on_generation(self.outcome(RUNNING, ""))
                if stop_after_generations is not None and generation + 1 >= stop_after_generations:
                    return self.outcome(RUNNING, "stopped (will resume)")
        if self.state.feasible == 0:
            return self._finish(INFEASIBLE, self._infeasible_message())
        if self.config.evaluation == "predictor+verify":
            self._verify_front()
        return self._finish(COMPLETED, self._summary())

    def _generation(self, study: optuna.Study, generation: int) -> None:
        a = self.config.algorithm
        trials = [study.ask() for _ in range(a.population)]
        params = [
            {name: t.suggest_categorical(name, choices) for name, choices in self.genes}
            for t in trials
        ]
        archs = [self.space.from_genes(p) for p in params]
        ids = [SearchSpace.canonical_id(arch) for arch in archs]
        new: dict[str, Arch] = {}
        for arch_id, arch in zip(ids, archs, strict=True):
            if arch_id not in self.state.cache:
                new.setdefault(arch_id, arch)
        if new:
            results = self.pool.evaluate(list(new.values()), self.quality_source)
            self.state.cache.update(zip(new, results, strict=True))
        rows = []
        for trial, p, arch, arch_id in zip(trials, params, archs, ids, strict=True):
            metrics = self.state.cache[arch_id]
            excess = violations(metrics, self.limits)
            for lim, value in zip(self.limits, excess, strict=True):
                trial.set_constraint(lim.metric, value)
            study.tell(trial, [metrics[o.metric] for o in self.objectives])
            self._account(metrics)
            rows.append((trial.number, p, arch, arch_id, metrics, excess))
        self._store_generation(generation, rows, len(new))

    def _store_generation(self, generation: int, rows: list, evaluated: int) -> None:
        with self.store.session() as s:
            candidate_ids = s.scalars(
                insert(Candidate).returning(Candidate.id, sort_by_parameter_order=True),
                [
                    {
                        "search_id": self.search_id,
                        "trial": number,
                        "generation": generation,
                        "arch_id": arch_id,
                        "arch": arch,
                        "params": p,
                        "feasible": all(v <= 0 for v in excess),
                        "violation": float(sum(max(v, 0.0) for v in excess)),
                        "top1": metrics.get(ACCURACY),
                        "top1_source": self.quality_source,
                        "top1_measured": metrics.get(ACCURACY)
                        if self.quality_source == "supernet"
                        else None,
                    }
                    for number, p, arch, arch_id, metrics, excess in rows
                ],
            ).all()
            metric_rows = [
                {
                    "search_id": self.search_id,
                    "candidate_id": cid,
                    "device": device,
                    "name": name,
                    "value": value,
                }
                for cid, (_, _, _, _, metrics, _) in zip(candidate_ids, rows, strict=True)
                for key, value in metrics.items()
                if key != ACCURACY
                for device, name in [split_metric(key)]
            ]
            if metric_rows:
                s.execute(insert(Metric), metric_rows)
            s.execute(
                update(Search)
                .where(Search.id == self.search_id)
                .values(
                    generations_done=generation + 1,
                    candidates_done=Search.candidates_done + len(rows),
                    evaluations_done=Search.evaluations_done + evaluated,
                    feasible_done=self.state.feasible,
                    best=dict(self.state.best),
                    seconds=self.state.seconds,
                    updated_at=_now(),
                )
            )

    # ----- endings ----------------------------------------------------------------------------

    def _status(self) -> str:
        with self.store.session() as s:
            return s.scalar(select(Search.status).where(Search.id == self.search_id))

    def _infeasible_message(self) -> str:
        ratios = {lim.metric: self.state.best_seen[lim.metric] / lim.value for lim in self.limits}
        tightest = max(ratios, key=ratios.get)
        limit = next(lim for lim in self.limits if lim.metric == tightest)
        return (
            f"infeasible: no candidate met every limit in {self.state.candidates} candidates; "
            f"tightest limit {tightest} <= {limit.value:.4g}, best value seen "
            f"{self.state.best_seen[tightest]:.4g} ({ratios[tightest]:.2f}x the limit)"
        )

    def _summary(self) -> str:
        best = ", ".join(f"{k} {v:.4g}" for k, v in self.state.best.items())
        return (
            f"completed: {self.state.feasible} of {self.state.candidates} candidates feasible; "
            f"best {best}"
        )

    def _verify_front(self) -> None:
        """predictor+verify: measure the final front's archs with the supernet."""
        front = pareto_front(self.store, self.search_id).front
        archs = {c.arch_id: c.arch for c in front}
        log.info("verifying the %d archs of the front with the supernet", len(archs))
        measured = self.pool.evaluate(list(archs.values()), "supernet")
        with self.store.session() as s:
            for arch_id, metrics in zip(archs, measured, strict=True):
                s.execute(
                    update(Candidate)
                    .where(Candidate.search_id == self.search_id, Candidate.arch_id == arch_id)
                    .values(top1_measured=metrics[ACCURACY])
                )

    def outcome(self, status: str, message: str) -> Outcome:
        with self.store.session() as s:
            return outcome_of(s.get(Search, self.search_id), status, message)

    def _finish(self, status: str, message: str) -> Outcome:
        with self.store.session() as s:
            s.execute(
                update(Search)
                .where(Search.id == self.search_id)
                .values(status=status, message=message, finished_at=_now(), updated_at=_now())
            )
        log.info("search %d %s", self.search_id, message)
        return self.outcome(status, message)


def outcome_of(row: Search, status: str | None = None, message: str | None = None) -> Outcome:
    return Outcome(
        row.id,
        status or row.status,
        row.message if message is None else message,
        row.generations_done,
        row.generations_total,
        row.candidates_done,
        row.evaluations_done,
        row.feasible_done,
        dict(row.best),
        row.seconds,
    )


def _unfinished(session: Any, search_id: int, store: Store) -> Search:
    """The search's row; SearchError if there is none or it has already ended."""
    row = store.search(session, search_id)
    if row.status in FINAL:
        raise SearchError(f"search {search_id} is already {row.status}")
    return row


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launch_search(config: SearchConfig, store: Store | None = None, **kwargs: Any) -> Outcome:
    runner_kwargs = {k: kwargs.pop(k) for k in ("pool", "progress", "on_generation") if k in kwargs}
    return SearchRunner.launch(config, store, **runner_kwargs).run(**kwargs)


def resume_search(search_id: int, store: Store, force: bool = False, **kwargs: Any) -> Outcome:
    runner_kwargs = {k: kwargs.pop(k) for k in ("pool", "progress", "on_generation") if k in kwargs}
    with store.session() as s:
        row = s.get(Search, search_id)
        if row is not None and row.status == CANCELLING:  # its driver died before stopping
            row.status, row.message, row.finished_at = CANCELLED, "cancelled", _now()
            return outcome_of(row)
    return SearchRunner.reopen(search_id, store, force, **runner_kwargs).run(**kwargs)


def cancel_search(search_id: int, store: Store) -> str:
    """Ask the driver to stop after its generation; returns the new status."""
    with store.session() as s:
        row = _unfinished(s, search_id, store)
        if row.status == FAILED:
            row.status, row.finished_at = CANCELLED, _now()
        else:
            row.status = CANCELLING
        return row.status
