"""Limits with confidence: `latency_ms: {max: X, confidence: 0.9}` checks the upper bound of
the 90% interval, so a search's front has upper bounds that all meet X."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import latency_models as lm
from nas.config import limits_of, read_search_config
from nas.errors import SearchConfigError
from nas.evaluation import without_exact_bounds
from nas.export import export_candidate
from nas.pareto import cell_text, load_candidates, pareto_front, to_csv, to_json
from nas.resources import check_search_config
from nas.search import COMPLETED, launch_search
from nas.store import Store

# a GPU whose latency predictions are off by up to about 35% (a spread the Student-t interval
# of these 8 rows widens further), so that bounds differ from the point value
RESIDUALS = [-0.25, -0.15, -0.08, -0.02, 0.03, 0.1, 0.18, 0.3]


@pytest.fixture
def bounded_gpu(tmp_path) -> str:
    profile = yaml.safe_load(lm.hardware_path("h100-sxm").read_text())
    profile["name"] = "h100-bounded"
    profile["uncertainty"] = {"latency_ms": {"log_ratios": RESIDUALS, "rows": "made up"}}
    path = tmp_path / "h100-bounded.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


@pytest.fixture
def plain_gpu(tmp_path) -> str:
    """A GPU profile that states no residuals (a user's own, before calibrating it)."""
    profile = yaml.safe_load(lm.hardware_path("h100-sxm").read_text())
    profile.pop("uncertainty", None)
    profile["name"] = "h100-plain"
    path = tmp_path / "h100-plain.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


def gpu_target(device: str, limit: float | dict) -> dict:
    return {device: {"latency_ms": limit, "batch": 64, "precision": "fp16"}}


def test_a_confident_limit_reads_as_a_limit_and_its_confidence():
    config = read_search_config(
        {"supernet": "x", "targets": {"h100-sxm": {"latency_ms": {"max": 2, "confidence": 0.8}}}}
    )
    target = config.targets["h100-sxm"]
    assert target.limits == {"latency_ms": 2} and target.confidence == {"latency_ms": 0.8}
    assert config.coverage == 0.8
    (limit,) = limits_of(config)
    assert (limit.metric, limit.checked) == ("h100-sxm.latency_ms", "h100-sxm.latency_ms_high")
    plain = read_search_config({"supernet": "x", "targets": {"h100-sxm": {"latency_ms": 2}}})
    assert plain.coverage == 0.9 and limits_of(plain)[0].checked == "h100-sxm.latency_ms"


def test_an_exact_metric_stores_no_bounds_and_a_limit_checks_its_value():
    value, bounded = np.array([8.0, 9.0]), np.array([1.0, 2.0])
    columns = {
        "peak_sram_kb": value,
        "peak_sram_kb_low": value.copy(),
        "peak_sram_kb_high": value.copy(),
        "latency_ms": bounded,
        "latency_ms_low": bounded * 0.9,
        "latency_ms_high": bounded * 1.2,
    }
    assert set(without_exact_bounds(columns)) == {
        "peak_sram_kb",
        "latency_ms",
        "latency_ms_low",
        "latency_ms_high",
    }
    config = read_search_config(
        {"supernet": "x", "targets": {"mcu": {"peak_sram_kb": {"max": 9, "confidence": 0.9}}}}
    )
    (limit,) = limits_of(config)
    assert limit.value_of({"mcu.peak_sram_kb": 8.5}) == 8.5
    assert limit.value_of({"mcu.peak_sram_kb": 8.5, "mcu.peak_sram_kb_high": 9.5}) == 9.5


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        (
            {"max": 2, "confidence": 1.5},
            r"targets\.DEV\.latency_ms\.confidence: must be less than 1",
        ),
        ({"max": 2, "confidence": 0}, r"targets\.DEV\.latency_ms\.confidence: must be more than 0"),
        (
            {"max": 2, "level": 0.9},
            r"targets\.DEV\.latency_ms: a limit must be a number, got \{.*\{max: 8, confidence",
        ),
        (
            {"confidence": 0.9},
            r"targets\.DEV\.latency_ms: a limit must be a number, got \{.*\{max: 8, confidence",
        ),
        (
            {"max": "2", "confidence": 0.9},
            r"targets\.DEV\.latency_ms: a limit must be a number, got \{",
        ),
    ],
)
def test_a_bad_confident_limit_names_its_field(raw_config, bounded_gpu, latency, message):
    raw = raw_config(targets=gpu_target(bounded_gpu, latency))
    with pytest.raises(SearchConfigError, match=message.replace("DEV", ".*h100-bounded.yaml")):
        check_search_config(raw, "test")


def test_confidence_needs_residuals_and_one_coverage_per_search(raw_config, bounded_gpu, plain_gpu):
    raw = raw_config(
        targets={
            plain_gpu: {"latency_ms": {"max": 2, "confidence": 0.9}},
            **gpu_target(bounded_gpu, {"max": 2, "confidence": 0.8}),
        }
    )
    with pytest.raises(SearchConfigError) as err:
        check_search_config(raw, "test")
    problems = {p["field"]: p["message"] for p in err.value.problems}
    plain = problems[f"targets.{plain_gpu}.latency_ms.confidence"]
    assert f"{plain_gpu} states no residuals for latency_ms" in plain
    assert "nas latency calibrate" in plain
    assert (
        f"differs from targets.{plain_gpu}.latency_ms.confidence = 0.9"
        in problems[f"targets.{bounded_gpu}.latency_ms.confidence"]
    )


def front_of(raw_config, device: str, limit: float | dict):
    checked = check_search_config(
        raw_config(
            targets=gpu_target(device, limit),
            algorithm={"population": 16, "generations": 3, "seed": 0},
        ),
        "test",
    )
    store = Store(checked.config.database)
    outcome = launch_search(checked, store, progress=False)
    assert outcome.status == COMPLETED
    return store, outcome.search_id, pareto_front(store, outcome.search_id).front


def test_a_search_with_confidence_has_a_front_whose_upper_bounds_meet_the_limit(
    raw_config, bounded_gpu
):
    point = f"{bounded_gpu}.latency_ms"
    # a limit in the middle of the space's latencies: many subnets meet it with their
    # predicted value, some of those not with their upper bound
    store, search_id, _ = front_of(raw_config, bounded_gpu, 1e6)
    every = load_candidates(store, search_id)
    assert all(c.bounds[point][0] < c.metrics[point] < c.bounds[point][1] for c in every)
    limit = sorted(c.metrics[point] for c in every)[len(every) // 2]

    *_, plain = front_of(raw_config, bounded_gpu, limit)
    assert all(c.metrics[point] <= limit for c in plain)
    assert any(c.bounds[point][1] > limit for c in plain)  # what confidence must rule out

    store, search_id, confident = front_of(
        raw_config, bounded_gpu, {"max": limit, "confidence": 0.9}
    )
    assert confident and all(c.bounds[point][1] <= limit for c in confident)
    # the search's own limit, as the page sends it: on the bound it checks, implied
    front = pareto_front(store, search_id, where=[f"latency_ms_high<={limit}"])
    assert front.conditions == [] and len(front.front) == len(confident)


def test_a_front_shows_its_intervals_apart_from_its_metrics(raw_config, bounded_gpu):
    point = f"{bounded_gpu}.latency_ms"
    store, search_id, front = front_of(raw_config, bounded_gpu, {"max": 1e6, "confidence": 0.8})
    best = front[0]
    row = json.loads(to_json(pareto_front(store, search_id)))["front"][0]
    low, high = best.bounds[point]
    # the predicted top-1 carries its interval too, at the search's coverage
    top1_low, top1_high = best.bounds["top1"]
    assert top1_low <= best.metrics["top1"] <= top1_high
    assert row["bounds"] == {
        point: {"low": low, "high": high},
        "top1": {"low": top1_low, "high": top1_high},
    }
    assert row["coverage"] == 0.8
    assert f"{point}_high" not in row and f"{point}_high" not in best.metrics
    header, first = to_csv(pareto_front(store, search_id)).splitlines()[:2]
    names = header.split(",")
    assert names[names.index(point) : names.index(point) + 3] == [
        point,
        f"{point}_low",
        f"{point}_high",
    ]
    assert float(dict(zip(names, first.split(","), strict=False))[f"{point}_high"]) == high
    assert cell_text(best, point) == f"{best.metrics[point]:.4g} [{low:.4g}, {high:.4g}]"


def test_the_model_card_gives_each_predicted_metric_its_interval(raw_config, bounded_gpu, tmp_path):
    point = f"{bounded_gpu}.latency_ms"
    store, search_id, front = front_of(raw_config, bounded_gpu, {"max": 1e6, "confidence": 0.8})
    best = front[0]
    card = export_candidate(store, search_id, best.trial, "state_dict", tmp_path / "out").card
    assert card["costs"][bounded_gpu]["latency_ms"] == best.metrics[point]
    assert "latency_ms_high" not in card["costs"][bounded_gpu]
    low, high = best.bounds[point]
    assert card["intervals"]["coverage"] == 0.8
    assert card["intervals"]["metrics"][bounded_gpu] == {"latency_ms": {"low": low, "high": high}}
    assert card["confidence"] == {bounded_gpu: {"latency_ms": 0.8}}
