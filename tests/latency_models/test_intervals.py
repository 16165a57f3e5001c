"""Prediction intervals of every shipped kind: GPU residuals per batch range, the MCU's exact
memory metrics, and the coverage of the shipped GPU intervals on their held-out rows."""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import latency_models as lm
import supernet
from latency_models.errors import ProfileError
from latency_models.models.gpu import batch_range
from latency_models.uncertainty import Residuals, read_uncertainty

ROOT = Path(__file__).resolve().parents[2]


def script(name: str):
    """A script of experiments/ as a module."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["rtx4090", "v100-sxm2", "a100-sxm", "h100-sxm", "l4"])
def test_every_shipped_gpu_bounds_latency_at_every_batch(name):
    hw = lm.load_hardware(name)
    assert hw.interval_metrics() == ("latency_ms",)
    for batch in (1, 8, 64):
        cost = hw.predict(lm.reference_spec("resnet50", batch=batch), coverage=0.9)
        assert cost["latency_ms_low"] <= cost["latency_ms"] <= cost["latency_ms_high"], batch
        assert "macs_low" not in cost


def test_a_gpu_picks_the_residuals_of_the_batch_range():
    hw = lm.load_hardware("rtx4090")
    spec = lm.reference_spec("resnet50")

    def width(batch: int) -> float:
        cost = hw.predict(spec.with_batch(batch), coverage=0.9)
        return cost["latency_ms_high"] / cost["latency_ms_low"]

    # batch 1 borrows few rows of other GPUs' harnesses: wider than 330 own rows at 256
    assert width(1) > 2 * width(256)
    assert batch_range(1) == "batch1" and batch_range(31) == "batch2-31"
    assert batch_range(32) == "batch32+"
    one = hw.residuals("latency_ms", lm.SpecBatch.of([spec]), {})
    mixed = hw.residuals("latency_ms", lm.SpecBatch.of([spec, spec.with_batch(64)]), {})
    assert len(mixed.log_ratios) == len(one.log_ratios) + len(
        hw.uncertainty["latency_ms@batch32+"].log_ratios
    )


def test_a_gpu_profile_names_its_uncertainty_entries(tmp_path):
    profile = yaml.safe_load(lm.hardware_path("h100-sxm").read_text())
    profile["uncertainty"] = {"latency_ms@batch7": {"log_ratios": [0.0, 0.1, 0.2], "rows": "x"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(profile))
    with pytest.raises(ProfileError, match=r"uncertainty.latency_ms@batch7.*latency_ms@batch1"):
        lm.load_hardware(path)
    # a plain entry serves every batch range without its own
    profile["uncertainty"] = {"latency_ms": {"log_ratios": [-0.1, 0.0, 0.1], "rows": "x"}}
    path.write_text(yaml.safe_dump(profile))
    cost = lm.load_hardware(path).predict(lm.reference_spec("resnet50", batch=3), coverage=0.9)
    assert cost["latency_ms_low"] < cost["latency_ms"] < cost["latency_ms_high"]


@pytest.mark.parametrize("name", ["stm32h743", "stm32f746"])
def test_mcu_memory_is_exact_and_latency_has_bounds(name):
    hw = lm.load_hardware(name)
    cost = hw.predict(lm.reference_spec("mcunet-in1"), coverage=0.9)
    for metric in ("peak_sram_kb", "peak_sram_layerwise_kb", "peak_sram_act_kb", "flash_kb"):
        assert cost[f"{metric}_low"] == cost[metric] == cost[f"{metric}_high"]
    assert cost["latency_ms_low"] < cost["latency_ms"] < cost["latency_ms_high"]
    assert hw.uncertainty["latency_ms"].rows.count("leave-one-out") == 1
    # TFLM's arena and flatbuffer are predicted from fitted struct sizes: not exact; their
    # intervals come from recorded TFLM runs the fit did not see
    tflm = hw.predict(lm.reference_spec("mcunet-in1"), coverage=0.9, runtime="tflm")
    for metric in ("peak_sram_kb", "flash_kb"):
        assert tflm[f"{metric}_low"] < tflm[metric] < tflm[f"{metric}_high"]
        assert "held-out TFLM runs" in hw.uncertainty[f"{metric}@tflm"].rows
    assert tflm["peak_sram_layerwise_kb_low"] == tflm["peak_sram_layerwise_kb"]
    assert "latency_ms_low" in tflm


def test_tflm_intervals_cover_held_out_runs_at_their_nominal_rate():
    fit_uncertainty = script("fit_uncertainty")
    for figure in fit_uncertainty.tflm_coverage("stm32f746", 0.9):
        assert 0.85 <= figure["coverage"] <= 0.95, figure
    # the shipped residuals are what the script computes from the records now
    shipped = lm.load_hardware("stm32f746").uncertainty
    for key, residuals in fit_uncertainty.tflm_uncertainty("stm32f746").items():
        assert shipped[key] == residuals, f"re-run experiments/fit_uncertainty.py ({key})"


def test_an_uncertainty_block_round_trips_through_a_profile_file(tmp_path):
    fit_uncertainty = script("fit_uncertainty")
    path = tmp_path / "v100.yaml"
    shutil.copy(lm.hardware_path("v100-sxm2"), path)
    before = yaml.safe_load(path.read_text())
    residuals = {"latency_ms@batch1": Residuals.of([1.0] * 4, [0.9, 1.0, 1.2, 1.5], "four rows")}
    fit_uncertainty.write_uncertainty(path, residuals)
    after = yaml.safe_load(path.read_text())
    assert {k: v for k, v in after.items() if k != "uncertainty"} == {
        k: v for k, v in before.items() if k != "uncertainty"
    }
    assert read_uncertainty(after["uncertainty"], str(path)) == residuals
    assert lm.load_hardware(path).uncertainty == residuals


def test_gpu_intervals_cover_held_out_networks_left_out_of_their_residuals(tmp_path):
    fit_uncertainty = script("fit_uncertainty")
    pool = fit_uncertainty.gpu_pool(tmp_path)
    figures = {(f["profile"], f["batches"]): f for f in fit_uncertainty.gpu_coverage(pool)}
    for key in (("rtx4090", "batch32+"), ("v100-sxm2", "batch32+")):
        assert 0.8 <= figures[key]["coverage"] <= 1.0, figures[key]
    # the shipped residuals are the ones the script computes from the profile on disk
    shipped = lm.load_hardware("rtx4090").uncertainty
    assert fit_uncertainty.gpu_uncertainty("rtx4090", pool) == shipped, (
        "re-run experiments/fit_uncertainty.py after refitting a profile"
    )


def test_mcu_leave_one_out_residuals_are_out_of_sample():
    fit_uncertainty = script("fit_uncertainty")
    predicted, measured, networks = fit_uncertainty.mcu_loo()
    in_sample = lm.load_hardware("stm32h743").predict_many([lm.reference_spec(n) for n in networks])
    in_sample_error = np.abs(np.log(measured / [c["latency_ms"] for c in in_sample]))
    assert np.mean(np.abs(np.log(measured / predicted))) > np.mean(in_sample_error)


def test_the_mobile_table_bounds_each_network_by_its_blocks_spread(tmp_path):
    hw = lm.load_hardware("note10")
    assert hw.interval_metrics() == ("latency_ms",)
    space = supernet.get_space("ofa-mbv3-w1.2")
    small = space.to_spec({**space.smallest(), "r": 160})
    large = space.to_spec({**space.largest(), "r": 208})  # r=208: interpolated variances
    out = hw.predict_arrays([small, large], coverage=0.9)
    half = out["latency_ms_high"] - out["latency_ms"]
    assert np.all(out["latency_ms_low"] < out["latency_ms"]) and np.all(half > 0)
    assert np.allclose(out["latency_ms"] - out["latency_ms_low"], half)  # normal: symmetric
    assert half[1] > half[0]  # more blocks, more variance
    assert np.all(half / out["latency_ms"] < 0.05)  # run-to-run noise only: narrow
    # the variances are the tables' std squared, summed: check one network by hand
    first = yaml.safe_load((lm.PROFILE_DIR / "note10" / "160_lookup_table.yaml").read_text())
    keys = [hw.key_of(sig, i == 0) for i, sig in enumerate(small.arrays.blocks)]
    sd = math.sqrt(sum(first[k]["std"] ** 2 for k in keys))
    assert half[0] == pytest.approx(1.6449 * sd, rel=1e-3)
    # residuals the profile states replace the spread
    profile = yaml.safe_load(lm.hardware_path("note10").read_text())
    profile["tables"] = {r: str(lm.PROFILE_DIR / t) for r, t in profile["tables"].items()}
    profile["uncertainty"] = {"latency_ms": {"log_ratios": [-0.2, 0.0, 0.2], "rows": "x"}}
    path = tmp_path / "note10-checked.yaml"
    path.write_text(yaml.safe_dump(profile))
    checked = lm.load_hardware(path).predict(small, coverage=0.9)
    assert checked["latency_ms_high"] / checked["latency_ms"] > 1.2


def test_a_learned_profile_states_cross_validated_residuals():
    from latency_models.models.learned import train

    rng = np.random.default_rng(3)
    specs = [lm.reference_spec(n, batch=int(b)) for n in ("resnet50", "mobilenetv2_100")
             for b in rng.integers(1, 64, 12)]  # fmt: skip
    measured = [s.macs * s.batch * 1e-8 * rng.lognormal(0, 0.05) for s in specs]
    profile = train(specs, measured, name="tiny-gbdt", trees=20)
    hw = lm.from_profile(profile, "tiny-gbdt.yaml")
    residuals = hw.uncertainty["latency_ms"]
    assert len(residuals.log_ratios) == len(specs) and "5-fold" in residuals.rows
    cost = hw.predict(specs[0], coverage=0.9)
    assert cost["latency_ms_low"] < cost["latency_ms_high"]
