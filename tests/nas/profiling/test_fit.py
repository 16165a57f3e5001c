"""Fitting profiles on measurements made from a profile's own predictions, scaled by a known
factor: a device of known speed."""

from __future__ import annotations

import csv

import pytest

import latency_models as lm
from nas import profiling
from tests.nas.profiling.helpers import NETWORKS, predicted_rows, write_rows

HELD_OUT = ("resnet50", "efficientnet_b2")  # networks outside every fit below


def held_out_ratio(fitted: lm.CostModel, base: lm.CostModel, **options: str) -> list[float]:
    """Each held-out network's prediction by `fitted` over `base`'s."""
    specs = [lm.reference_spec(n, batch=64) for n in HELD_OUT]
    return [
        fitted.predict(s, **options)["latency_ms"] / base.predict(s, **options)["latency_ms"]
        for s in specs
    ]


def test_calibrate_recovers_a_uniformly_slower_device(tmp_path):
    csv = write_rows(tmp_path / "m.csv", predicted_rows("a100-sxm", NETWORKS, 1.5))
    out = tmp_path / "slow-a100.yaml"
    result = profiling.calibrate("a100-sxm", [csv], out)
    assert result.rows == len(NETWORKS) and result.path == out
    assert result.fit.before["latency_ms_mape"] == pytest.approx(1 - 1 / 1.5)
    assert result.fit.after["latency_ms_mape"] < 0.03
    fitted = lm.load_hardware(str(out))
    assert fitted.name == "slow-a100"  # the file stem, unless named
    cal = fitted.profile["calibration"]
    assert cal["rows"] == len(NETWORKS) and cal["measurements"] == [str(csv)]
    assert cal["mape_before"]["latency_ms_mape"] == pytest.approx(0.3333, abs=1e-4)
    assert held_out_ratio(fitted, result.model) == pytest.approx([1.5, 1.5], rel=0.1)
    assert result.model.uncertainty and not fitted.uncertainty  # the base's residuals are stale


def test_calibrate_names_the_profile_and_fits_every_filled_metric(tmp_path):
    model = lm.load_hardware("stm32h743")
    rows = []
    for network in ("mcunet-in0", "mcunet-in1", "mcunet-in2", "mbv2-w0.35", "proxyless-w0.3"):
        cost = model.predict(lm.reference_spec(network))
        rows.append({"network": network, "latency_ms": 1.3 * cost["latency_ms"]})
        rows[-1].update(peak_sram_kb=cost["peak_sram_kb"], flash_kb=cost["flash_kb"])
    csv = write_rows(tmp_path / "mcu.csv", rows)
    result = profiling.calibrate("stm32h743", [csv], tmp_path / "x.yaml", name="my-board")
    assert lm.load_hardware(str(tmp_path / "x.yaml")).name == "my-board"
    assert set(result.fit.after) == {"latency_ms_mape", "peak_sram_kb_mape", "flash_kb_mape"}
    assert result.fit.before["latency_ms_mape"] == pytest.approx(1 - 1 / 1.3)
    assert result.fit.after["latency_ms_mape"] < 0.05


def test_adapt_moves_the_base_profile_to_a_faster_device(tmp_path):
    rows = predicted_rows("rtx4090", NETWORKS, 0.8, precision="fp16")
    csv = write_rows(tmp_path / "few.csv", rows)
    out = tmp_path / "fast.yaml"
    result = profiling.adapt("rtx4090", [csv], out)
    # the base predicts every row 1/0.8 - 1 = 25% too slow
    assert result.before["mape"] == pytest.approx(0.25) and result.before["bias"] == pytest.approx(
        0.25
    )
    assert result.before["n"] == len(NETWORKS) and result.before["kendall_tau"] == pytest.approx(1)
    assert result.after["mape"] < 0.05
    adapted = lm.load_hardware(str(out))
    cal = adapted.profile["calibration"]
    assert cal["adapted_from"] == "rtx4090" and cal["rows"] == len(NETWORKS)
    assert cal["mape_before"] == pytest.approx(0.25, abs=1e-4)
    assert adapted.profile["description"] == f"adapted from rtx4090 on {len(NETWORKS)} measurements"
    assert adapted.peak_tflops == result.model.peak_tflops  # the datasheet stays the base's
    ratio = held_out_ratio(adapted, result.model, precision="fp16")
    assert ratio == pytest.approx([0.8, 0.8], rel=0.1)


def test_adapt_frees_only_the_speed_and_overheads_of_the_stacks_measured():
    assert "bandwidth_scale" in profiling.ADAPT_DEVICE_PARAMETERS
    assert all(
        p.startswith(("efficiency.", "bandwidth_", "kernel_launch_us"))
        for p in profiling.ADAPT_DEVICE_PARAMETERS
    )
    assert all(p.startswith("{stack}.") for p in profiling.ADAPT_STACK_PARAMETERS)
    assert profiling.ADAPT_PRIOR_WEIGHT == 1.0


def test_adapt_only_the_stack_of_a_known_gpu(tmp_path):
    """An A100 timed by a slower host (per-kernel cost 4x the stack file's): `--only stack`
    moves that stack's host costs alone, the device keeps the base's parameters, and the
    written profile names the adapted stack as its own."""
    base = lm.load_hardware("a100-sxm")
    shipped = base.stacks["pytorch-2-eager"]
    slow_host = {"op_overhead_us": 4 * shipped.op_overhead_us}
    truth = lm.from_profile(
        {**base.profile, "stacks": {"pytorch-2-eager": {**shipped.to_profile(), **slow_host}}},
        "truth.yaml",
    )
    rows = []
    for batch in (1, 64):
        for network in NETWORKS:
            spec = lm.reference_spec(network, batch=batch)
            latency = truth.predict(spec, stack="pytorch-2-eager")["latency_ms"]
            rows.append(
                {"network": network, "batch": batch, "stack": "pytorch-2-eager",
                 "latency_ms": latency}
            )  # fmt: skip
    csv = write_rows(tmp_path / "host.csv", rows)
    out = tmp_path / "my-a100.yaml"
    result = profiling.adapt("a100-sxm", [csv], out, only="stack")
    # the pull towards the base (ADAPT_PRIOR_WEIGHT) keeps it a little short of the truth
    assert result.before["mape"] > 0.3 and result.after["mape"] < 0.1
    adapted = lm.load_hardware(str(out))
    assert adapted.default_stack == "pytorch-2-eager"
    fitted = adapted.stacks["pytorch-2-eager"].op_overhead_us
    assert 3 * shipped.op_overhead_us < fitted <= slow_host["op_overhead_us"] * 1.05
    assert adapted.efficiency == base.efficiency  # the device did not move
    assert adapted.kernel_launch_us == base.kernel_launch_us
    assert adapted.profile["calibration"]["only"] == "stack"
    with pytest.raises(profiling.MeasurementError, match="only: value 'host' is not allowed"):
        profiling.adapt("a100-sxm", [csv], out, only="host")


def test_fits_that_need_latency_refuse_rows_without_it(tmp_path):
    csv = tmp_path / "sram.csv"
    csv.write_text("network,peak_sram_kb\nmcunet-in0,49\n")
    with pytest.raises(profiling.MeasurementError, match="adapting a profile needs a latency_ms"):
        profiling.adapt("rtx4090", [csv], tmp_path / "a.yaml")
    with pytest.raises(profiling.MeasurementError, match="training needs a latency_ms column"):
        profiling.fit_learned([csv], tmp_path / "g.yaml")
    assert not (tmp_path / "a.yaml").exists() and not (tmp_path / "g.yaml").exists()


def test_calibrate_refuses_rows_the_profile_cannot_cost(tmp_path):
    csv = write_rows(tmp_path / "m.csv", predicted_rows("a100-sxm", NETWORKS[:3], 1.0))
    # a phone's look-up table holds batch 1 only
    with pytest.raises(profiling.HardwareError, match="batch 64 is not tabulated; allowed: 1"):
        profiling.calibrate("note10", [csv], tmp_path / "x.yaml")
    with pytest.raises(lm.UnknownHardwareError):
        profiling.calibrate("no-such-device", [csv], tmp_path / "x.yaml")
    assert not (tmp_path / "x.yaml").exists()


def test_fit_learned_writes_a_learned_profile(tmp_path):
    rows = predicted_rows("a100-sxm", NETWORKS, 1.0)
    rows = [{**r, "processor": "A100", "statistic": "min"} for r in rows]
    csv = write_rows(tmp_path / "m.csv", rows)
    result = profiling.fit_learned([csv], tmp_path / "gbdt.yaml", trees=5, depth=2)
    assert result.rows == len(NETWORKS) and result.train_mape > 0
    learned = lm.load_hardware(str(result.path))
    assert learned.kind == "learned" and learned.name == "gbdt"
    trained_on = result.profile["trained_on"]
    assert trained_on["statistic"] == ["min"] and trained_on["measurements"] == [str(csv)]
    assert trained_on["spaces"] == sorted(NETWORKS) and trained_on["arch_ids"] == []
    assert result.profile["description"].endswith(f"on {len(NETWORKS)} measured subnets (A100)")


def test_adapt_states_in_sample_residuals_and_fewer_rows_widen_them(tmp_path):
    """Real public rows of an RTX 3090 (timm, eager AMP) adapt the RTX 4090's profile."""
    public = lm.PROFILE_DIR / "gpu" / "public" / "timm-rtx3090.csv"
    rows = [
        r
        for r in csv.DictReader(public.read_text().splitlines())
        if r["framework"] == "pytorch-2.4.0-cu124-amp" and r["precision"] == "fp16"
    ]
    firsts = list({r["network"]: r for r in rows}.values())[:20]
    widths = {}
    for n in (10, 20):
        path = write_rows(tmp_path / f"few-{n}.csv", firsts[:n])
        profiling.adapt("rtx4090", [path], tmp_path / f"adapted-{n}.yaml")
        adapted = lm.load_hardware(str(tmp_path / f"adapted-{n}.yaml"))
        residuals = adapted.uncertainty["latency_ms"]
        assert set(adapted.uncertainty) == {"latency_ms"}  # the base's batch ranges are gone
        assert len(residuals.log_ratios) == n and residuals.fitted_parameters == 7
        cost = adapted.predict(lm.reference_spec("resnet50", batch=256), coverage=0.9)
        assert cost["latency_ms_low"] < cost["latency_ms"] < cost["latency_ms_high"]
        low, high = residuals.factors(0.9)
        widths[n] = high / low
    assert widths[10] > widths[20]
