"""Prediction intervals from residuals (latency_models.uncertainty) and their plumbing in
every cost model's predict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

import latency_models as lm
from latency_models.errors import OptionError, ProfileError
from latency_models.uncertainty import (
    AdditiveResiduals,
    Residuals,
    interval_offsets,
    read_uncertainty,
    t_quantile,
)


def test_t_quantile_is_close_to_the_tables():
    # two-sided 90% (p = 0.95) from the t tables
    for dof, exact in ((3, 2.353), (5, 2.015), (10, 1.812), (19, 1.729), (100, 1.660)):
        assert t_quantile(0.95, dof) == pytest.approx(exact, rel=0.01)


def test_conformal_intervals_cover_new_draws_at_their_nominal_rate():
    rng = np.random.default_rng(29)
    for n in (40, 200):
        coverage = []
        for _ in range(300):
            held_out = rng.normal(0.1, 0.2, n)  # a model 10% slow, 20% spread
            residuals = Residuals(tuple(sorted(held_out)), "draws")
            fresh = np.exp(rng.normal(0.1, 0.2, 200))
            coverage.append(residuals.covers(np.ones(200), fresh))
        assert np.mean(coverage) == pytest.approx(0.9, abs=0.02), n


def test_few_rows_and_in_sample_rows_widen_honestly():
    rng = np.random.default_rng(7)
    hits = {"t": [], "in_sample": []}
    for _ in range(400):
        rows = rng.normal(0.0, 0.15, 12)
        fresh = np.exp(rng.normal(0.0, 0.15, 100))
        hits["t"].append(Residuals(tuple(sorted(rows)), "12 rows").covers(np.ones(100), fresh))
        # a 4-parameter fit leaves in-sample residuals that are too small by about
        # sqrt((n - p) / n): their spread is taken with n - p degrees of freedom
        shrunk = rows * math.sqrt(8 / 12)
        fitted = Residuals(tuple(sorted(shrunk)), "in sample", fitted_parameters=4)
        hits["in_sample"].append(fitted.covers(np.ones(100), fresh))
    assert np.mean(hits["t"]) == pytest.approx(0.9, abs=0.03)
    assert np.mean(hits["in_sample"]) == pytest.approx(0.9, abs=0.04)


def test_additive_residuals_cover_new_draws_and_share_the_rank_rule():
    rng = np.random.default_rng(3)
    for n in (6, 60):  # a Student-t interval, then split conformal
        coverage = []
        for _ in range(300):
            held_out = rng.normal(-0.004, 0.01, n)  # top-1 predicted 0.4 points high
            residuals = AdditiveResiduals.of(np.full(n, 0.9), 0.9 + held_out, "draws")
            fresh = 0.9 + rng.normal(-0.004, 0.01, 200)
            coverage.append(residuals.covers(np.full(200, 0.9), fresh))
        assert np.mean(coverage) == pytest.approx(0.9, abs=0.03), n
    # the same order statistics as the multiplicative form, on the residuals' own scale
    errors = tuple(np.linspace(-0.02, 0.03, 59))
    low, high = interval_offsets(errors, 0.9)
    assert AdditiveResiduals(errors).offsets(0.9) == (low, high)
    factors = Residuals(errors).factors(0.9)
    assert factors == pytest.approx((math.exp(low), math.exp(high)))


def test_additive_bounds_hold_the_prediction_and_round_trip():
    biased = AdditiveResiduals(tuple(np.linspace(0.01, 0.03, 40)), "all measured above")
    low, high = biased.bounds(np.array([0.9, 0.95]))
    assert np.all(low == np.array([0.9, 0.95])) and np.all(high > low)  # widened to hold p
    assert AdditiveResiduals.from_dict(biased.to_dict()) == biased
    # out-of-sample coverage of symmetric draws is near nominal, not the in-sample 100%
    draws = AdditiveResiduals(tuple(sorted(np.random.default_rng(0).normal(0, 0.01, 200))))
    assert draws.leave_one_out_coverage(0.9) == pytest.approx(0.9, abs=0.03)
    # with a spread, residuals are in its units and bounds scale with it
    spread = np.array([1.0, 2.0, 4.0, 1.0, 2.0])
    scaled = AdditiveResiduals.of(np.zeros(5), np.array([-1, 2, -4, 1, 4.0]), "x", spread=spread)
    assert scaled.errors == (-1.0, -1.0, 1.0, 1.0, 2.0)
    low, high = scaled.bounds(np.zeros(2), 0.5, spread=np.array([1.0, 3.0]))
    assert low[0] < 0 < high[0] and (low[1], high[1]) == pytest.approx((3 * low[0], 3 * high[0]))
    with pytest.raises(ValueError, match="at least 3 finite errors"):
        AdditiveResiduals.from_dict({"errors": [0.1, float("nan"), 0.2]})


def test_exact_metrics_have_zero_width_and_asymmetric_tails_are_kept():
    assert Residuals.exact("a memory plan").factors(0.9) == (1.0, 1.0)
    slow = Residuals(tuple(np.linspace(0.0, 0.5, 99)), "a model that runs slow")
    low, high = slow.factors(0.9)
    assert low >= 1.0 and high == pytest.approx(math.exp(0.475), rel=0.01)


def test_a_profile_states_its_residuals_and_predictions_carry_bounds(tmp_path):
    profile = yaml.safe_load(lm.hardware_path("h100-sxm").read_text())
    profile["uncertainty"] = {
        "latency_ms": {"log_ratios": [-0.2, -0.1, 0.0, 0.1, 0.2], "rows": "five rows"}
    }
    path = tmp_path / "h100-bounded.yaml"
    path.write_text(yaml.safe_dump(profile))
    hw = lm.load_hardware(path)
    spec = lm.family_spec("resnet50", batch=32)
    cost = hw.predict(spec, coverage=0.9)
    assert cost["latency_ms_low"] < cost["latency_ms"] < cost["latency_ms_high"]
    assert "macs_low" not in cost and "params_high" not in cost
    assert "latency_ms_low" not in hw.predict(spec)  # no coverage asked: no bounds
    assert hw.interval_metrics() == ("latency_ms",)
    wider = hw.predict(spec, coverage=0.99)
    assert wider["latency_ms_high"] > cost["latency_ms_high"]
    with pytest.raises(OptionError, match="coverage"):
        hw.predict(spec, coverage=1.5)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ([1, 2], "expected a mapping"),
        ({"latency_ms": {"rows": "x"}}, "expected a mapping with log_ratios"),
        ({"latency_ms": {"log_ratios": [0.1, "a"]}}, "finite numbers"),
        ({"latency_ms": {"log_ratios": [0.1, 0.2]}}, "at least 3"),
        ({"latency_ms": {"log_ratios": [0.1, 0.2, 0.3], "colour": 1}}, "unknown field"),
    ],
)
def test_a_bad_uncertainty_block_names_the_field(block, message):
    with pytest.raises(ProfileError, match=message):
        read_uncertainty(block, "p.yaml")
