"""The search loop: configs, generations in SQL, dedup, limits, infeasibility, resume, cancel."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from sqlalchemy import func, select

from nas.errors import NotFoundError, SearchConfigError, SearchError
from nas.evaluation import CandidateEvaluator
from nas.pareto import load_candidates
from nas.resources import check_search_config
from nas.search import (
    CANCELLED,
    COMPLETED,
    INFEASIBLE,
    cancel_search,
    launch_search,
    limits_of,
    records,
    resume_search,
    violations,
)
from nas.store import Candidate, Metric, Search, Store
from nas.workers import LocalPool


class CountingPool(LocalPool):
    """Records how many archs each call evaluates."""

    def __init__(self, evaluator):
        super().__init__(evaluator)
        self.calls: list[int] = []

    def evaluate(self, archs, quality="predictor"):
        self.calls.append(len(archs))
        return super().evaluate(archs, quality)


def candidates(store: Store, search_id: int) -> list[Candidate]:
    with store.session() as s:
        return list(s.scalars(select(Candidate).where(Candidate.search_id == search_id)))


# ----- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"targets": {"no-such-device": {"latency_ms": 1}}}, "targets.no-such-device"),
        ({"targets": {"stm32f746": {"sram": 320}}}, "stm32f746 has no metric 'sram'"),
        ({"targets": {"a100-sxm": {"latency_ms": 1, "precision": "fp8"}}}, "precision"),
        ({"targets": {"stm32f746": {"flash_kb": -5}}}, "a limit must be > 0"),
        ({"objectives": [{"metric": "stm32f746.joules", "goal": "minimize"}]}, "objectives.0"),
        ({"objectives": [{"metric": "top1", "goal": "best"}]}, "objectives.0.goal"),
        ({"algorithm": {"population": 2}}, "algorithm.population"),
        ({"evaluation": "oracle"}, "evaluation"),
        ({"predictor": None}, "needs a predictor"),
        ({"colour": "red"}, "colour"),
        ({"targets": {}}, "targets"),
        (
            {"targets": {"stm32f746": {"peak_sram_kb": float("nan")}}},
            "targets.stm32f746.peak_sram_kb: a limit must be > 0 and finite, got nan",
        ),
        (
            {"targets": {"stm32f746": {"flash_kb": float("inf")}}},
            "targets.stm32f746.flash_kb: a limit must be > 0 and finite, got inf",
        ),
        ({"algorithm": {"seed": 2**32}}, "algorithm.seed: .*4294967295, got 4294967296"),
        ({"algorithm": {"seed": -1}}, "algorithm.seed: must be at least 0, got -1"),
        (
            {"algorithm": {"population": 99999999999999999999}},
            "algorithm.population: must be at most 100000, got 99999999999999999999",
        ),
        (
            {"algorithm": {"generations": 10**12}},
            "algorithm.generations: must be at most 1000000, got 1000000000000",
        ),
        (
            {"targets": {"stm32f746": {"peak_sram_kb": "8"}}},
            r"targets.stm32f746.peak_sram_kb: a limit must be a number, got '8' \(str\)",
        ),
        (
            {"targets": {"stm32f746": {"flash_kb": True}}},
            "targets.stm32f746.flash_kb: a limit must be a number, got True",
        ),
    ],
)
def test_bad_configs_name_the_field(search_config, change, message):
    with pytest.raises(SearchConfigError, match=message):
        search_config(**change)


def test_one_problem_is_one_line(search_config):
    with pytest.raises(SearchConfigError) as err:
        search_config(algorithm={"seed": 2**32})
    assert "\n" not in str(err.value)


def test_run_folders_stand_for_their_files(search_config, tiny_supernet, tiny_predictor):
    folder = tiny_supernet.path.parent
    checked = search_config(supernet=str(folder), predictor=str(folder))
    config = checked.config
    assert config.supernet == str(tiny_supernet.path.resolve())
    assert config.predictor == str(type(folder)(tiny_predictor).resolve())
    assert checked.resources.artifact.sha256 == tiny_supernet.sha256
    again = check_search_config(config.model_dump(mode="json"), "stored").config  # as resumed
    assert again.supernet == config.supernet and again.predictor == config.predictor
    store = Store(config.database)
    outcome = launch_search(checked, store, progress=False)
    assert outcome.status == COMPLETED


def test_a_folder_without_the_trained_file_is_refused(search_config, tmp_path):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(SearchConfigError, match=r"supernet: .*empty-run is a folder that holds "):
        search_config(supernet=str(empty))
    with pytest.raises(SearchConfigError, match=r"predictor: .*empty-run .*predictor\.pt"):
        search_config(predictor=str(empty))
    with pytest.raises(SearchConfigError, match=r"predictor: file not found: .*nope\.pt"):
        search_config(predictor=str(tmp_path / "nope.pt"))


def test_default_objectives_and_target_fields(raw_config):
    raw = raw_config(objectives=[])
    given = copy.deepcopy(raw)
    config = check_search_config(raw, "test").config
    assert raw == given  # checking returns a new config: what it was given is left as it was
    assert [o.metric for o in config.objectives] == [
        "top1",
        "stm32f746.latency_ms",
        "h100-sxm.latency_ms",
    ]
    h100 = config.targets["h100-sxm"]
    assert h100.batch == 64 and h100.options == {"precision": "fp16", "runtime": "tensorrt"}
    assert h100.limits == {"latency_ms": 0.7}


# ----- the loop -------------------------------------------------------------------------------


def test_search_stores_every_generation(search_config):
    checked = search_config()
    config = checked.config
    store = Store(config.database)
    outcome = launch_search(checked, store, progress=False)
    assert outcome.status == COMPLETED and outcome.generations_done == 3
    rows = candidates(store, outcome.search_id)
    assert sorted(c.trial for c in rows) == list(range(24))
    assert Counter(c.generation for c in rows) == {0: 8, 1: 8, 2: 8}
    limits = limits_of(config)
    with store.session() as s:
        for c in rows:
            values = {
                f"{d}.{n}": v
                for d, n, v in s.execute(
                    select(Metric.device, Metric.name, Metric.value).where(
                        Metric.candidate_id == c.id
                    )
                )
            }
            assert c.feasible == all(v <= 0 for v in violations(values, limits))
            assert "stm32f746.peak_sram_kb" in values and "h100-sxm.latency_ms" in values
        search = s.get(Search, outcome.search_id)
        assert search.candidates_done == 24 and search.feasible_done == sum(
            c.feasible for c in rows
        )
        assert search.supernet.sha256 and search.predictor is not None


def test_repeated_archs_are_evaluated_once(search_config):
    config = search_config(
        algorithm={"population": 8, "generations": 6, "seed": 1, "mutation_prob": 0.0}
    )
    pool = CountingPool(CandidateEvaluator.of(config.resources))
    outcome = launch_search(config, Store(config.config.database), pool=pool, progress=False)
    distinct = {c.arch_id for c in candidates(Store(config.config.database), outcome.search_id)}
    # the precheck evaluates the smallest subnet once; every distinct arch exactly once more
    assert sum(pool.calls) - 1 == len(distinct) == outcome.evaluations
    assert outcome.evaluations < outcome.candidates  # crossover without mutation repeats archs


def test_limit_the_smallest_subnet_exceeds_ends_at_once(search_config):
    config = search_config(targets={"stm32f746": {"flash_kb": 1.0}})
    outcome = launch_search(config, Store(config.config.database), progress=False)
    assert outcome.status == INFEASIBLE and outcome.generations_done == 0
    assert "stm32f746.flash_kb" in outcome.message and "limit 1" in outcome.message


def test_search_without_feasible_candidate_names_tightest_limit(search_config):
    evaluator = CandidateEvaluator.of(search_config().resources)
    (smallest,) = evaluator.costs([evaluator.space.smallest()])
    limit = smallest["stm32f746.latency_ms"] * 1.0001  # met only by (nearly) the smallest
    config = search_config(targets={"stm32f746": {"latency_ms": limit, "flash_kb": 900}})
    outcome = launch_search(config, Store(config.config.database), progress=False)
    assert outcome.status == INFEASIBLE and outcome.generations_done == 3
    assert "tightest limit stm32f746.latency_ms" in outcome.message
    assert "best value seen" in outcome.message


def test_cancel_stops_after_the_generation(search_config):
    config = search_config(algorithm={"population": 8, "generations": 10, "seed": 0})
    store = Store(config.config.database)

    def cancel_after_two(outcome):
        if outcome.generations_done == 2:
            cancel_search(outcome.search_id, store)

    outcome = launch_search(config, store, progress=False, on_generation=cancel_after_two)
    assert outcome.status == CANCELLED and outcome.generations_done == 2
    with pytest.raises(SearchError, match="already cancelled"):
        cancel_search(outcome.search_id, store)


def test_a_cancelled_search_resumes_where_it_stopped(search_config):
    config = search_config(algorithm={"population": 8, "generations": 4, "seed": 0})
    store = Store(config.config.database)

    def cancel_after_one(outcome):
        if outcome.generations_done == 1:
            cancel_search(outcome.search_id, store)

    cancelled = launch_search(config, store, progress=False, on_generation=cancel_after_one)
    assert cancelled.status == CANCELLED and cancelled.generations_done == 1
    seen = []
    resumed = resume_search(
        cancelled.search_id,
        store,
        progress=False,
        on_generation=lambda o: seen.append(records.status_of(store, o.search_id)),
    )
    assert resumed.status == COMPLETED and resumed.generations_done == 4
    assert seen == ["running"] * 3  # shown as running again while it runs
    with pytest.raises(SearchError, match="already completed"):
        resume_search(cancelled.search_id, store, progress=False)


def test_predictor_plus_verify_measures_the_front(search_config):
    config = search_config(evaluation="predictor+verify")
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    rows = load_candidates(store, outcome.search_id)
    verified = [c for c in rows if c.top1_measured is not None]
    assert verified and all(c.feasible for c in verified)
    assert all(0.0 <= c.top1_measured <= 1.0 for c in verified)


def test_supernet_evaluation(search_config):
    config = search_config(
        evaluation="supernet", predictor=None, algorithm={"population": 4, "generations": 2}
    )
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    assert outcome.status == COMPLETED
    assert {c.quality_source for c in candidates(store, outcome.search_id)} == {"supernet"}
    rows = load_candidates(store, outcome.search_id)
    assert all(c.top1_measured == c.metrics["top1"] for c in rows)


def test_resume_continues_a_stopped_search_without_loss_or_duplicates(search_config):
    config = search_config(algorithm={"population": 8, "generations": 5, "seed": 3})
    store = Store(config.config.database)
    partial = launch_search(config, store, progress=False, stop_after_generations=2)
    before = {(c.trial, c.arch_id) for c in candidates(store, partial.search_id)}
    assert partial.generations_done == 2 and len(before) == 16
    outcome = resume_search(partial.search_id, store, progress=False)
    assert outcome.status == COMPLETED and outcome.generations_done == 5
    after = candidates(store, partial.search_id)
    assert before <= {(c.trial, c.arch_id) for c in after}
    assert sorted(c.trial for c in after) == list(range(40))
    assert Counter(c.generation for c in after) == {g: 8 for g in range(5)}


def test_resume_after_kill_9(search_config, tmp_path):
    """The driver is a real process, killed with SIGKILL in the middle of the search."""
    config = search_config(algorithm={"population": 8, "generations": 400, "seed": 4})
    path = tmp_path / "search.yaml"
    raw = config.config.model_dump(mode="json")
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "search", "launch", str(path), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    store = Store(config.config.database)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 3:
        time.sleep(0.2)
        with store.session() as s:
            done = s.scalar(select(func.max(Search.generations_done))) or 0
        assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with store.session() as s:
        search = s.scalars(select(Search)).one()
        assert search.status == "running"  # a killed driver cannot say anything
        stored = {(c.trial, c.arch_id) for c in candidates(store, search.id)}
        killed_at = search.generations_done
    assert len(stored) == 8 * killed_at  # whole generations only
    # resume with a short horizon: the stored config is the one that runs
    with store.session() as s:
        row = s.get(Search, search.id)
        row.config = {
            **row.config,
            "algorithm": {**row.config["algorithm"], "generations": killed_at + 2},
        }
        row.generations_total = killed_at + 2
    outcome = resume_search(search.id, store, progress=False)
    assert outcome.status == COMPLETED
    after = candidates(store, search.id)
    assert stored <= {(c.trial, c.arch_id) for c in after}
    assert sorted(c.trial for c in after) == list(range(8 * (killed_at + 2)))


def test_resume_refuses_finished_or_unknown_searches(search_config):
    config = search_config(algorithm={"population": 4, "generations": 1})
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    with pytest.raises(SearchError, match="already completed"):
        resume_search(outcome.search_id, store, progress=False)
    with pytest.raises(NotFoundError, match="no search with id 999"):
        resume_search(999, store, progress=False)


def test_config_round_trips_through_the_database(search_config):
    config = search_config().config
    again = check_search_config(config.model_dump(mode="json"), "db").config
    assert again == config
