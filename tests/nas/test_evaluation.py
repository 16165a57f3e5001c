"""Candidate evaluation: predicted quality carries its interval, measured quality none."""

from __future__ import annotations

import dataclasses

import pytest

from nas.evaluation import CandidateEvaluator


def test_predicted_quality_carries_its_bounds_and_measured_none(search_config):
    evaluator = CandidateEvaluator.of(search_config().resources)
    archs = [evaluator.space.sample(i) for i in range(4)]
    wide = evaluator.evaluate(archs, "predictor")
    narrow = evaluator.quality(archs, "predictor", coverage=0.5)
    for row, half in zip(wide, narrow, strict=True):
        assert row["top1_low"] <= row["top1"] <= row["top1_high"]
        assert half["top1"] == pytest.approx(row["top1"])
        assert row["top1_low"] <= half["top1_low"] and half["top1_high"] <= row["top1_high"]
        assert half["top1_high"] - half["top1_low"] < row["top1_high"] - row["top1_low"]
    measured = evaluator.quality(archs[:1], "supernet")
    assert not {"top1_low", "top1_high"} & set(measured[0])


def test_a_predictor_without_residuals_gives_points_only(search_config):
    evaluator = CandidateEvaluator.of(search_config().resources)
    evaluator.predictor = dataclasses.replace(evaluator.predictor, residuals=None)
    (row,) = evaluator.quality([evaluator.space.sample(0)], "predictor")
    assert set(row) == {"top1"}
