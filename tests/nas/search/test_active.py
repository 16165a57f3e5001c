"""`evaluation: active`: a measurement budget spent by a predictor-guided loop. Every stored
candidate is a supernet measurement; the loop resumes without measuring anything twice; its
config is checked."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import yaml

from nas.config import active_plan
from nas.errors import SearchConfigError
from nas.pareto import load_candidates, pareto_front
from nas.search import COMPLETED, RUNNING, launch_search, resume_search
from nas.search.acquisition import (
    Ensemble,
    greedy_batch,
    hypervolume,
    reference_point,
    stratified_genes,
)
from nas.store import Candidate, Search, Store

BUDGET = 30
# a measurement on the tiny supernet takes ~0.7 s on 2 busy cores: the end-to-end test of the
# loop lowers the least budget the config check accepts (nas.resources reads it) to 14
SMALL_BUDGET = 14


def active(search_config, monkeypatch, **overrides):
    monkeypatch.setattr("nas.resources.MIN_ACTIVE_BUDGET", SMALL_BUDGET)
    return search_config(
        evaluation="active",
        predictor=None,
        budget=SMALL_BUDGET,
        algorithm={"population": 8, "generations": 3, "seed": 2},
        active={"initial": 8, "batch": 3},
        **overrides,
    )


def _measured_only(store, search_id, budget=BUDGET):
    rows = load_candidates(store, search_id)
    assert len(rows) == budget
    assert len({c.arch_id for c in rows}) == budget  # nothing measured twice
    with store.session() as s:
        sources = s.query(Candidate.quality_source).filter_by(search_id=search_id).all()
    assert {source for (source,) in sources} == {"supernet"}
    assert all(c.measured["top1"] == c.metrics["top1"] for c in rows)
    assert sorted(c.trial for c in rows) == list(range(budget))
    return rows


def test_an_active_search_measures_its_budget_once_each_and_resumes(search_config, monkeypatch):
    config = active(search_config, monkeypatch)
    assert active_plan(config.config).rounds == 3  # 8, then 3 and 3
    store = Store(config.config.database)
    partial = launch_search(config, store, progress=False, stop_after_generations=2)
    assert partial.status == RUNNING and partial.candidates == 11
    with store.session() as s:
        assert "hypervolume" in s.get(Search, partial.search_id).message
    outcome = resume_search(partial.search_id, store, progress=False)
    assert outcome.status == COMPLETED and outcome.generations_done == 3
    assert "measured front hypervolume" in outcome.message
    rows = _measured_only(store, outcome.search_id, SMALL_BUDGET)
    assert Counter(c.generation for c in rows) == {0: 8, 1: 3, 2: 3}
    assert all(c.feasible for c in rows)  # costs are exact: nothing over a limit is measured
    front = pareto_front(store, outcome.search_id).front
    assert front and all(c.measured["top1"] == c.metrics["top1"] for c in front)


@pytest.mark.slow  # two searches of 14 measurements
def test_a_resumed_active_search_chooses_what_an_unbroken_one_chooses(search_config, monkeypatch):
    """Each round is seeded from (seed, round), and measuring is deterministic: a search
    stopped after round 1 and resumed measures, round by round, the archs of an unbroken one."""
    store = Store(active(search_config, monkeypatch).config.database)
    partial = launch_search(
        active(search_config, monkeypatch), store, progress=False, stop_after_generations=2
    )
    resumed = resume_search(partial.search_id, store, progress=False)
    unbroken = launch_search(active(search_config, monkeypatch), store, progress=False)

    def rounds(search_id):
        return {(c.generation, c.arch_id) for c in load_candidates(store, search_id)}

    assert rounds(resumed.search_id) == rounds(unbroken.search_id)


@pytest.mark.slow  # 30 measurements on the tiny supernet: ~20 s on 2 busy cores
def test_an_active_search_runs_from_the_cli(raw_config, tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app

    raw = raw_config(
        evaluation="active",
        predictor=None,
        budget=BUDGET,
        algorithm={"population": 8, "generations": 2, "seed": 0},
    )
    path = tmp_path / "active.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["search", "launch", str(path)])
    assert result.exit_code == 0, result.output
    store = Store(raw["database"])
    with store.session() as s:
        (row,) = s.query(Search).all()
        assert row.status == COMPLETED and row.candidates_done == BUDGET
    _measured_only(store, row.id)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"budget": None}, "budget", "required with `evaluation: active`"),
        ({"budget": 10}, "budget", "at least 30"),
        ({"budget": 10**30}, "budget", "holds"),
        ({"active": {"initial": 40}}, "active.initial", "less than the budget"),
        ({"active": {"size": 4}}, "active.size", "unknown field"),
        ({"predictor": "x.pt"}, "predictor", "fits its own predictor"),
        ({"evaluation": "supernet"}, "budget", "goes with `evaluation: active` only"),
    ],
)
def test_active_config_problems_name_their_field(raw_config, overrides, field, words):
    from nas.resources import check_search_config

    raw = raw_config(evaluation="active", predictor=None, budget=BUDGET)
    raw.update(overrides)
    with pytest.raises(SearchConfigError) as err:
        check_search_config(raw, "test")
    problems = {p["field"]: p["message"] for p in err.value.problems}
    assert field in problems and words in problems[field], problems


def test_the_stratified_sample_balances_each_gene():
    genes = [("a", (1, 2, 3)), ("b", (0, 1))]
    rows = stratified_genes(genes, 20, np.random.default_rng(0))
    assert sorted(Counter(r["a"] for r in rows).values()) == [6, 7, 7]
    assert Counter(r["b"] for r in rows) == {0: 10, 1: 10}


def test_the_greedy_batch_spreads_along_the_front():
    front = np.array([[0.5, 0.5]])
    reference = np.array([1.0, 1.0])
    assert hypervolume(front, reference) == pytest.approx(0.25)
    # two candidates at the same corner and one at the other: the second pick goes across
    candidates = np.array([[0.1, 0.9], [0.11, 0.91], [0.9, 0.1], [0.6, 0.6]])
    picks = greedy_batch(front, candidates, np.zeros(4), reference, 2)
    assert sorted(picks) == [0, 2]


def test_the_ensemble_fits_and_spreads_and_the_reference_bounds_the_initial_sample():
    rng = np.random.default_rng(0)
    x = (rng.random((80, 12)) < 0.5).astype(float)
    y = x[:, :3].sum(axis=1) * 0.1
    mean, std = Ensemble(x, y, np.random.default_rng(1)).predict(x)
    assert np.abs(mean - y).max() < 0.05 and std.max() > 0  # bootstrap members differ
    again, _ = Ensemble(x, y, np.random.default_rng(1)).predict(x)
    assert np.array_equal(mean, again)  # seeded: a resumed round fits the same models
    initial = np.array([[0.0, 4.0], [2.0, 1.0]])
    reference, scale = reference_point(initial)
    assert reference == pytest.approx([2.2, 4.3]) and scale == pytest.approx([2.2, 3.3])
    assert hypervolume(initial, reference) > 0
    assert hypervolume(np.array([[3.0, 0.0]]), reference) == 0.0  # beyond the reference
    assert hypervolume(np.array([[1.0], [0.5]]), np.array([2.0])) == 1.5  # one objective
