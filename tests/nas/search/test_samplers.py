"""`algorithm.sampler`: NSGA-III on whole generations, the model-based samplers (motpe, gp)
through ask / tell for supernet-measured searches, `auto`, and the config check that keeps
model-based samplers off predictor-evaluated searches."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest

from nas.config import Algorithm
from nas.errors import SearchConfigError
from nas.pareto import load_candidates
from nas.search import COMPLETED, launch_search, resume_search
from nas.search.sampler import GenerationalNSGAIII, new_study, sampler_name
from nas.store import Store


def measured(search_config, sampler: str, **algorithm):
    return search_config(
        evaluation="supernet",
        predictor=None,
        algorithm={"population": 4, "generations": 3, "seed": 1, "sampler": sampler, **algorithm},
    )


# gp fits its Gaussian process at every ask (about 1 s each here): slow; motpe takes the same
# ask / tell path in the default suite
@pytest.mark.parametrize("sampler", [pytest.param("gp", marks=pytest.mark.slow), "motpe"])
def test_a_model_based_sampler_runs_a_supernet_measured_search_and_resumes(search_config, sampler):
    config = measured(search_config, sampler)
    store = Store(config.config.database)
    partial = launch_search(config, store, progress=False, stop_after_generations=2)
    outcome = resume_search(partial.search_id, store, progress=False)
    assert outcome.status == COMPLETED and outcome.generations_done == 3
    rows = load_candidates(store, outcome.search_id)
    assert sorted(c.trial for c in rows) == list(range(12))
    assert Counter(c.generation for c in rows) == {0: 4, 1: 4, 2: 4}
    assert all(c.top1_measured == c.metrics["top1"] for c in rows)  # measured, not predicted


def test_a_model_based_sampler_learns_from_the_trials_and_their_constraints():
    """The sampler sees each told trial's values and constraint violations: after its
    random start, TPE's draws move towards the feasible, better region."""
    distributions = {
        f"g{i}": optuna.distributions.CategoricalDistribution([0, 1, 2, 3]) for i in range(6)
    }
    from nas.config import Objective
    from nas.search.sampler import GenerationSampler

    algorithm = Algorithm(population=8, generations=8, seed=3, sampler="motpe")
    objectives = [Objective(metric="a", goal="minimize"), Objective(metric="b", goal="minimize")]
    study = new_study(algorithm, distributions, objectives, 0, "supernet")
    sampler = GenerationSampler(study, distributions, 3)
    late = []
    for generation in range(8):
        params = sampler.ask(8)
        sums = [sum(p.values()) for p in params]
        values = [[s, abs(s - 6)] for s in sums]
        # feasible only when g0 is 0: a violation the sampler must learn to avoid
        constraints = [{"g0": float(p["g0"])} for p in params]
        numbers = sampler.tell(params, values, constraints)
        assert numbers == list(range(8 * generation, 8 * generation + 8))
        if generation >= 5:
            late += [p["g0"] for p in params]
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 64 and all(t.constraints for t in trials)
    assert Counter(late)[0] > len(late) / 2  # uniform draws would give a quarter


def test_nsga3_runs_on_whole_generations(search_config):
    config = search_config(algorithm={"population": 8, "generations": 3, "seed": 2,
                                      "sampler": "nsga3"})  # fmt: skip
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    assert outcome.status == COMPLETED and outcome.candidates == 24
    study = new_study(config.config.algorithm, {}, config.config.objectives, 0)
    assert isinstance(study.sampler, GenerationalNSGAIII)


def test_auto_picks_gp_for_a_small_supernet_measured_search_only():
    small = Algorithm(population=10, generations=20, sampler="auto")
    large = Algorithm(population=48, generations=20, sampler="auto")
    assert sampler_name(small, "supernet") == "gp"
    assert sampler_name(small, "predictor") == "nsga2"
    assert sampler_name(large, "supernet") == "nsga2"
    assert sampler_name(Algorithm(sampler="nsga3"), "predictor") == "nsga3"


@pytest.mark.parametrize("sampler", ["gp", "motpe"])
def test_a_model_based_sampler_on_a_predictor_search_is_a_config_problem(search_config, sampler):
    with pytest.raises(SearchConfigError, match=rf"algorithm.sampler: {sampler} fits a model"):
        search_config(algorithm={"population": 8, "generations": 3, "sampler": sampler})
