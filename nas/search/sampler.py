"""The sampler: one of Optuna's, in memory, a generation at a time.

`algorithm.sampler` picks it (`sampler_name` resolves `auto`):
* nsga2 (the default) and nsga3: genetic; a generation is drawn and told back as a batch
  (`GenerationSampler`): each child's parameters come from the algorithm's own selection,
  crossover and mutation (`sample_relative`), and the evaluated children go back to the
  study as finished trials in one `add_trials`. Optuna's per-parameter trial machinery
  (`ask`, `suggest_categorical`, `tell`) is not used: it checks every parameter's
  distribution against every earlier one and deep-copies the trial on every write, about
  60 us per parameter, so 26 genes cost 1.5 ms per candidate, more than evaluating it and
  storing it together. This is what makes 1,000+ candidates/s on a predictor.
* motpe (multi-objective TPE) and gp (a Gaussian process, log expected hypervolume
  improvement): model-based, for searches whose candidates are measured on the supernet,
  where a candidate costs seconds and a sampler that learns from every result spends fewer
  of them. Each child goes through Optuna's `ask` / `tell` (the model needs the trial), a
  generation still asked and evaluated as one batch; constraints are set on each trial
  (`Trial.set_constraint`), which both samplers read.
* random: uniform draws with the same budget (a baseline).
"""

from __future__ import annotations

import copy
import datetime
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState

from nas.config import Algorithm, Objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


class GenerationalGA:
    """Optuna's genetic samplers (NSGA-II, NSGA-III), told three facts about this loop
    through their public sampler methods.

    The loop draws whole generations, so trial n belongs to generation n // population
    (stored trials are re-added in order on resume, keeping that true); the search space is
    the space's fixed genes; and a generation's parents, once selected, do not change. Optuna
    would otherwise infer the first two again for every trial, by scanning every earlier
    trial and deep-copying the search space, and find the parents by scanning every trial
    for every child: quadratic in the number of trials, most of the driver's time at 5,000
    candidates.
    """

    population_size: int

    def __init__(self, search_space: dict[str, CategoricalDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]  # the Optuna sampler's
        self._genes = {n: d for n, d in search_space.items() if not d.single()}
        self._parents: dict[int, list[Any]] = {}

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

    def get_parent_population(self, study: optuna.Study, generation: int) -> list[Any]:
        if generation not in self._parents:
            parents = [] if generation == 0 else self.select_parent(study, generation)  # type: ignore[attr-defined]
            self._parents[generation] = parents
            self._parents.pop(generation - 2, None)  # only the last two are read again
        return self._parents[generation]


class GenerationalNSGAII(GenerationalGA, optuna.samplers.NSGAIISampler):
    """NSGA-II on whole generations (see GenerationalGA)."""


class GenerationalNSGAIII(GenerationalGA, optuna.samplers.NSGAIIISampler):
    """NSGA-III (reference points: a front spread over 3 or more objectives) on whole
    generations (see GenerationalGA)."""


# `auto` picks gp for a supernet-measured search of at most this many candidates (where a
# model that learns from each measurement saves the most of them), else NSGA-II
AUTO_GP_BUDGET = 300


def sampler_name(algorithm: Algorithm, evaluation: str) -> str:
    """The sampler a search runs: `algorithm.sampler`, with `auto` resolved."""
    if algorithm.sampler != "auto":
        return algorithm.sampler
    budget = algorithm.population * algorithm.generations
    return "gp" if evaluation == "supernet" and budget <= AUTO_GP_BUDGET else "nsga2"


class GenerationStorage(InMemoryStorage):
    """Optuna's in-memory storage, keeping the finished trials the loop hands it.

    `create_new_trial` deep-copies its template trial, since a caller might change it
    afterwards: a third of the driver's time at 26 genes. The loop builds each template for
    this one call and never touches it again, so a shallow copy of the trial object (its
    own number and id) is enough. The body is InMemoryStorage's (optuna 5.0.0, pinned)."""

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            return super().create_new_trial(study_id)
        with self._lock:
            self._check_study_id(study_id)
            trial = copy.copy(template_trial)
            trial_id = self._max_trial_id + 1
            self._max_trial_id += 1
            trial.number = len(self._studies[study_id].trials)
            trial._trial_id = trial_id
            self._trial_id_to_study_id_and_number[trial_id] = (study_id, trial.number)
            self._studies[study_id].trials.append(trial)
            self._update_cache(trial_id, study_id)
            return trial_id


def finished_trial(
    params: dict[str, Any],
    distributions: dict[str, CategoricalDistribution],
    values: Sequence[float],
    constraints: dict[str, float],
) -> FrozenTrial:
    """A complete trial, as optuna.trial.create_trial makes it, without converting each
    distribution from Optuna's old classes (ours are current: 100 us per trial)."""
    now = datetime.datetime.now()
    trial = FrozenTrial(
        number=-1,
        trial_id=-1,
        state=TrialState.COMPLETE,
        value=None,
        values=list(values),
        datetime_start=now,
        datetime_complete=now,
        params=params,
        distributions=distributions,
        user_attrs={},
        system_attrs={},
        intermediate_values={},
    )
    for key, value in constraints.items():
        trial.set_constraint(key, value)
    return trial


@dataclass(frozen=True)
class _Child:
    """What NSGA-II reads of a trial it draws parameters for: its number."""

    number: int


class GenerationSampler:
    """Draws a generation's parameters and tells their results back, a batch at a time."""

    def __init__(
        self,
        study: optuna.Study,
        distributions: dict[str, CategoricalDistribution],
        seed: int,
    ) -> None:
        self.study = study
        self.distributions = distributions
        self.names = list(distributions)
        self.told = len(study.get_trials(deepcopy=False))
        # genes NSGA-II leaves out (the first generation's, and mutated ones) are drawn
        # uniformly, as Optuna's own independent sampling does
        self.rng = np.random.default_rng(seed)
        # a model-based sampler's trials, asked and not yet told
        self.asked: list[optuna.Trial] = []

    def ask(self, n: int) -> list[dict[str, Any]]:
        sampler = self.study.sampler
        if not isinstance(sampler, GenerationalGA | optuna.samplers.RandomSampler):
            self.asked = [self.study.ask(self.distributions) for _ in range(n)]
            return [dict(trial.params) for trial in self.asked]
        relative: dict[str, CategoricalDistribution] = {}
        if isinstance(sampler, GenerationalGA):
            relative = sampler.infer_relative_search_space(self.study, None)
        draws = {
            name: self.rng.integers(len(d.choices), size=n)
            for name, d in self.distributions.items()
        }
        out = []
        for k in range(n):
            child = (
                sampler.sample_relative(self.study, _Child(self.told + k), relative)
                if relative
                else {}
            )
            out.append(
                {
                    name: child[name]
                    if name in child
                    else self.distributions[name].choices[int(draws[name][k])]
                    for name in self.names
                }
            )
        return out

    def tell(
        self,
        params: Sequence[dict[str, Any]],
        values: Sequence[Sequence[float]],
        constraints: Sequence[dict[str, float]],
    ) -> list[int]:
        """Add the evaluated children as finished trials; returns their trial numbers."""
        if self.asked:
            numbers = []
            for trial, v, c in zip(self.asked, values, constraints, strict=True):
                for key, value in c.items():
                    trial.set_constraint(key, value)
                numbers.append(self.study.tell(trial, list(v)).number)
            self.asked = []
            self.told += len(numbers)
            return numbers
        trials = [
            finished_trial(p, self.distributions, v, c)
            for p, v, c in zip(params, values, constraints, strict=True)
        ]
        self.study.add_trials(trials)
        numbers = list(range(self.told, self.told + len(trials)))
        self.told += len(trials)
        return numbers


def new_study(
    algorithm: Algorithm,
    distributions: dict[str, CategoricalDistribution],
    objectives: list[Objective],
    generations_done: int,
    evaluation: str = "predictor",
) -> optuna.Study:
    """A fresh in-memory study; a resumed search re-adds its stored trials to it."""
    a = algorithm
    seed = study_seed(a, generations_done)
    name = sampler_name(a, evaluation)
    sampler: optuna.samplers.BaseSampler
    if name == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif name == "motpe":
        # multivariate: the genes of one block act together; the first generation is random
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=a.population
        )
    elif name == "gp":
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=a.population)
    else:
        genetic = GenerationalNSGAIII if name == "nsga3" else GenerationalNSGAII
        with warnings.catch_warnings():  # NSGA-III is "experimental" in Optuna 5.0 (pinned)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = genetic(
                distributions,
                population_size=a.population,
                mutation_prob=a.mutation_prob,
                crossover_prob=a.crossover_prob,
                swapping_prob=a.swapping_prob,
                seed=seed,
            )
    return optuna.create_study(
        storage=GenerationStorage(),
        directions=[o.goal for o in objectives],
        sampler=sampler,
    )


def study_seed(algorithm: Algorithm, generations_done: int) -> int:
    """A resumed driver continues with a seed of its own: the sampler's random state in the
    dead process cannot be recovered, only its trials."""
    return algorithm.seed + 1000 * generations_done
