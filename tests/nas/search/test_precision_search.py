"""Precision-aware search: a target's `precision: int8` makes the search measure quality
after static int8 quantization (top1_int8), and export write the file that target runs."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from nas import core
from nas.errors import SearchConfigError
from nas.export import default_formats
from nas.pareto import load_candidates
from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Metric, Store
from supernet.mbconv.family import CLASSIFIER


def int8_mcu(raw_config, **overrides):
    raw = raw_config(**overrides)
    raw["targets"]["stm32f746"]["precision"] = "int8"
    return raw


def test_an_mcu_runs_int8_only_and_measured_metrics_are_not_predicted(raw_config):
    raw = raw_config()
    raw["targets"]["stm32f746"]["precision"] = "fp32"
    with pytest.raises(SearchConfigError, match=r"targets\.stm32f746.*'precision'.*allowed: int8"):
        check_search_config(raw, "t")
    raw = int8_mcu(raw_config, objectives=[{"metric": "top1_int8", "goal": "maximize"}])
    with pytest.raises(SearchConfigError, match="'top1_int8' is measured, and this predictor"):
        check_search_config(raw, "t")
    # predictor evaluation keeps its (predicted) top1 objective; the supernet measures int8
    assert check_search_config(int8_mcu(raw_config), "t").config.metric_names[0] == "top1"
    measured = check_search_config(int8_mcu(raw_config, evaluation="supernet"), "t")
    assert measured.config.metric_names[0] == "top1_int8"


def test_a_search_for_an_int8_target_measures_quality_after_quantization(raw_config):
    raw = int8_mcu(raw_config, evaluation="supernet", predictor=None)
    raw["algorithm"] = {"population": 4, "generations": 1, "seed": 0}
    config = check_search_config(raw, "t")
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    rows = load_candidates(store, outcome.search_id)
    assert rows and all({"top1", "top1_int8"} <= set(r.metrics) for r in rows)
    assert all(0 <= r.metrics["top1_int8"] <= 1 for r in rows)
    front = core.query_front(outcome.search_id, db=store)
    assert front.objectives[0].metric == "top1_int8"
    # what export writes by default: the int8 file for the MCU, fp16 for the fp16 GPU
    assert {"onnx_int8", "onnx_fp16", "pt2"} <= set(default_formats(config.config, CLASSIFIER)[0])


def test_export_writes_the_16_bit_file_each_gpu_target_was_costed_at(raw_config):
    raw = raw_config()
    raw["targets"]["a100-sxm4-40gb"] = {"latency_ms": 2, "batch": 64, "precision": "bf16"}
    formats, _ = default_formats(check_search_config(raw, "t").config, CLASSIFIER)
    assert {"onnx_int8", "onnx_fp16", "onnx_bf16"} <= set(formats)
    raw["targets"]["h100-sxm"]["precision"] = "fp32"
    del raw["targets"]["a100-sxm4-40gb"]
    assert not {"onnx_fp16", "onnx_bf16"} & set(
        default_formats(check_search_config(raw, "t").config, CLASSIFIER)[0]
    )


def test_predictor_verify_measures_int8_quality_on_the_front(raw_config):
    raw = int8_mcu(raw_config, evaluation="predictor+verify")
    raw["algorithm"] = {"population": 4, "generations": 1, "seed": 0}
    config = check_search_config(raw, "t")
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    with store.session() as s:
        names = set(s.scalars(select(Metric.name).where(Metric.device == "")))
    assert {"top1", "top1_measured", "top1_int8_measured"} <= names
    assert "top1_int8" not in names  # never predicted
    front = core.query_front(outcome.search_id, db=store)
    assert all("top1_int8" in c.measured for c in front.front)


def test_a_predictor_with_an_int8_drop_model_predicts_top1_int8(
    raw_config, tiny_supernet, tmp_path
):
    """`nas predictor fit --int8-sample N` measures N int8 drops and fits a ridge model of
    them; a predictor search may then optimise top1_int8 = predicted top1 - predicted drop."""
    from typer.testing import CliRunner

    from nas.cli import app
    from supernet.mbconv.predictor import load_predictor

    out = tmp_path / "predictor.pt"
    args = ["predictor", "fit", "-c", str(tiny_supernet.path), "--n", "24", "--held-out", "4"]
    args += ["--epochs", "5", "--int8-sample", "10", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    drop = json.loads(result.output.strip().splitlines()[-1])["int8_drop"]
    assert drop["n"] == 10 and drop["loo_rmse_points"] >= 0
    assert drop["mean_only_loo_rmse_points"] >= 0
    predictor = load_predictor(out, tiny_supernet)
    assert predictor.int8_drop is not None

    objectives = [{"metric": "top1_int8", "goal": "maximize"}]
    raw = int8_mcu(raw_config, predictor=str(out), objectives=objectives)
    raw["algorithm"] = {"population": 4, "generations": 1, "seed": 0}
    config = check_search_config(raw, "t")
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    rows = load_candidates(store, outcome.search_id)
    archs = [r.arch for r in rows]
    expected = predictor.predict_int8([tiny_supernet.space.validate(a) for a in archs])
    got = [r.metrics["top1_int8"] for r in rows]
    assert got == pytest.approx(expected.tolist())
    # measured drops: the model's intercept and slope come from them, not from a constant
    assert any(abs(r.metrics["top1"] - r.metrics["top1_int8"]) > 0 for r in rows)
