"""Successive halving in an active search (`active.halving`): a subnet is measured on part of
the validation split first, and on the rest only where it could still join the measured
front; every stored figure says how many images it used."""

from __future__ import annotations

import pytest

from nas.errors import SearchConfigError
from nas.pareto import load_candidates, pareto_front
from nas.search import COMPLETED, launch_search
from nas.store import Store
from supernet.mbconv.family import ClassifierFamily

SMALL_BUDGET = 14
OBJECTIVES = [
    {"metric": "top1", "goal": "maximize"},
    {"metric": "stm32f746.latency_ms", "goal": "minimize"},
]


def test_halving_stops_only_subnets_the_measured_front_already_beats(
    search_config, monkeypatch, tiny_supernet
):
    # The tiny supernet's validation split has a handful of images, where the confidence
    # bound stops nothing: the bound is the partial figure itself here, so that the rule
    # (stop where an earlier front point is no worse on every cost and at least as accurate)
    # is what decides.
    monkeypatch.setattr(
        "supernet.mbconv.checkpoint.top1_upper_bound", lambda correct, n: correct / n
    )
    monkeypatch.setattr("nas.resources.MIN_ACTIVE_BUDGET", SMALL_BUDGET)
    config = search_config(
        evaluation="active",
        predictor=None,
        budget=SMALL_BUDGET,
        objectives=OBJECTIVES,
        algorithm={"population": 8, "generations": 3, "seed": 2},
        active={"initial": 8, "batch": 3, "halving": 0.5},
    )
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    assert outcome.status == COMPLETED and "validation images" in _message(store, outcome)
    rows = load_candidates(store, outcome.search_id)
    assert len(rows) == SMALL_BUDGET
    whole = len(tiny_supernet.dataset().val)
    half = round(0.5 * whole)
    images = {c.arch_id: c.metrics["top1_images"] for c in rows}
    assert set(images.values()) <= {float(half), float(whole)}
    assert all(images[c.arch_id] == whole for c in rows if c.generation == 0)
    stopped = [c for c in rows if images[c.arch_id] == half]
    assert stopped, "the seeded search stops some subnet on its first half"

    def covers(earlier, c):
        return (
            earlier.generation < c.generation
            and earlier.metrics["stm32f746.latency_ms"] <= c.metrics["stm32f746.latency_ms"]
            and earlier.metrics["top1"] >= c.metrics["top1"]
        )

    for c in stopped:  # each stopped one was beaten by a point measured before its round
        assert any(covers(e, c) for e in rows if images[e.arch_id] == whole), c.arch_id
    front = pareto_front(store, outcome.search_id).front
    assert front and not {c.arch_id for c in front} & {c.arch_id for c in stopped}
    # a subnet that went on has the top-1 of a whole measurement
    went_on = [c for c in rows if c.generation > 0 and images[c.arch_id] == whole][:2]
    again = tiny_supernet.measure_quality([c.arch for c in went_on])
    assert [c.metrics["top1"] for c in went_on] == [r["top1"] for r in again]


def _message(store, outcome):
    from nas.store import Search

    with store.session() as s:
        return s.get(Search, outcome.search_id).message + outcome.message


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"objectives": [OBJECTIVES[1]]}, "top1 must be an objective, to maximize"),
        ({"objectives": [{"metric": "top1", "goal": "minimize"}]}, "to maximize"),
        (
            {"targets": {"stm32f746": {"peak_sram_kb": 12, "precision": "int8"}}},
            "also measures top1_int8",
        ),
    ],
)
def test_halving_config_problems_name_the_field(raw_config, overrides, words):
    from nas.resources import check_search_config

    raw = raw_config(
        evaluation="active",
        predictor=None,
        budget=30,
        objectives=OBJECTIVES,
        active={"halving": 0.25},
    )
    raw.update(overrides)
    with pytest.raises(SearchConfigError) as err:
        check_search_config(raw, "test")
    problems = {p["field"]: p["message"] for p in err.value.problems}
    assert words in problems.get("active.halving", ""), problems


@pytest.mark.parametrize("fraction", [0, 1, 1.5])
def test_a_halving_fraction_outside_0_and_1_is_refused(raw_config, fraction):
    from nas.resources import check_search_config

    raw = raw_config(evaluation="active", predictor=None, budget=30, active={"halving": fraction})
    with pytest.raises(SearchConfigError, match=r"active\.halving"):
        check_search_config(raw, "test")


def test_a_family_that_cannot_measure_in_part_refuses_halving(raw_config, monkeypatch):
    from nas.resources import check_search_config

    monkeypatch.setattr(ClassifierFamily, "measures_partially", False)
    raw = raw_config(evaluation="active", predictor=None, budget=30, active={"halving": 0.25})
    with pytest.raises(SearchConfigError, match="cannot be measured on part of its validation"):
        check_search_config(raw, "test")
