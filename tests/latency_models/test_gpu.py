"""The GPU roofline on hand-computed layers, precision options, and calibration."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models import OptionError, ProfileError, SpecBuilder

CLASSES = ("conv", "pointwise", "depthwise", "grouped", "linear", "pool", "elementwise")
PROFILE = {
    "name": "toy-gpu",
    "kind": "gpu",
    "peak_tflops": {"fp16": 100, "fp32": 10},
    "vector_tflops": {"fp16": 10, "fp32": 10},
    "memory_bandwidth_gbs": 1000,
    "kernel_launch_us": 5,
    "network_overhead_us": 0,
    "default_precision": "fp16",
    "efficiency": dict.fromkeys(CLASSES, 0.5),
    "memory_efficiency": 1.0,
}


def toy(**changes) -> lm.CostModel:
    return lm.from_profile({**PROFILE, **changes}, "toy.yaml")


def linear_net(batch: int = 1) -> lm.NetworkSpec:
    b = SpecBuilder((1000, 1, 1), batch=batch)
    b.linear("fc", 1000, bias=True, src=None)
    return b.build()


def test_memory_bound_at_batch_1():
    # bytes: (1000 in + 1000 out) x 2 + 1e6 weights x 2 = 2,004,000 -> 2.004 us at 1 TB/s;
    # compute 2e6 flops / (100 TFLOPS x 0.5) = 0.04 us; plus one 5 us launch
    assert toy().predict(linear_net())["latency_ms"] == pytest.approx(7.004e-3)


def test_compute_bound_at_large_batch():
    # 2e6 x 4096 flops / 5e13 = 163.84 us; bytes 2000 x 4096 x 2 + 2e6 = 18.4 us
    cost = toy().predict(linear_net(batch=4096))
    assert cost["latency_ms"] == pytest.approx(0.16384 + 0.005)
    assert cost["macs"] == 1_000_000  # MACs stay per sample


def test_precision_and_half_saturation():
    spec = linear_net(batch=4096)
    fp32 = toy().predict(spec, precision="fp32")["latency_ms"]
    # fp32: 10 TFLOPS -> 1.6384 ms compute; 4-byte elements: 36.8 us memory
    assert fp32 == pytest.approx(1.6384 + 0.005)
    slow = toy(half_saturation_gflop={"tensor": 8.192, "vector": 0}).predict(spec)
    # a layer of exactly the half-saturation work runs at half the rate
    assert slow["latency_ms"] == pytest.approx(2 * 0.16384 + 0.005)


def test_depthwise_runs_on_cuda_cores():
    b = SpecBuilder((1024, 56, 56), batch=256)
    b.conv("dw", 1024, kernel=3, groups=1024, src=None)
    dw = b.build()
    b = SpecBuilder((1024, 56, 56), batch=256)
    b.conv("pw", 1024, kernel=1, src=None)
    pw = b.build()
    hw = toy()
    flops_dw, flops_pw = 2 * dw.macs * 256, 2 * pw.macs * 256
    t_dw, t_pw = hw.predict(dw)["latency_ms"], hw.predict(pw)["latency_ms"]
    assert t_dw / flops_dw > 5 * t_pw / flops_pw  # per flop, depthwise is far slower


def test_unfused_bn_and_act_add_kernels():
    b = SpecBuilder((8, 4, 4))
    b.conv("c", 8, kernel=1, act="relu", src=None)  # BatchNorm too (bn=True by default)
    spec = b.build()
    fused = toy().predict(spec)["latency_ms"]
    unfused = toy(fuse_bn_act=False).predict(spec)["latency_ms"]
    assert unfused - fused == pytest.approx(2 * 0.005, rel=1e-3)


def test_shipped_profiles_and_precisions():
    space = supernet.get_space("ofa-mbv3-w1.0")
    spec = space.to_spec(space.largest(), batch=64)
    a100, h100 = lm.load_hardware("a100-sxm"), lm.load_hardware("h100-sxm")
    assert h100.predict(spec)["latency_ms"] < a100.predict(spec)["latency_ms"]
    assert a100.predict(spec, precision="fp32")["latency_ms"] > a100.predict(spec)["latency_ms"]
    assert h100.predict(spec, precision="fp8")["latency_ms"] > 0
    assert "fp8" not in a100.options()["precision"]
    with pytest.raises(OptionError, match=r"a100-sxm has no fp8 support.*allowed: fp32, tf32"):
        a100.predict(spec, precision="fp8")
    with pytest.raises(OptionError, match="unknown precision 'fp64'"):
        a100.predict(spec, precision="fp64")
    with pytest.raises(OptionError, match=r"option 'sparsity': not an option.*allowed: precision"):
        a100.predict(spec, sparsity=True)
    with pytest.raises(OptionError, match="batch comes from the spec"):
        a100.predict(spec, batch=8)
    # batch 1 is launch-bound: far from 64x cheaper than batch 64
    assert a100.predict(spec.with_batch(1))["latency_ms"] > a100.predict(spec)["latency_ms"] / 16


def test_calibration_recovers_a_known_device():
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(0)
    specs = [
        space.to_spec(space.sample(rng), batch=int(rng.choice([1, 16, 64]))) for _ in range(40)
    ]
    truth = toy(
        efficiency={**PROFILE["efficiency"], "pointwise": 0.05, "depthwise": 0.02},
        kernel_launch_us=12.0,
    )
    measured = {"latency_ms": truth.predict_arrays(specs)["latency_ms"]}
    fit = toy().fit(specs, measured)
    assert fit.before["latency_ms_mape"] > 0.3
    assert fit.after["latency_ms_mape"] < 0.05
    assert lm.from_profile(fit.profile, "new.yaml").kind == "gpu"
    with pytest.raises(lm.HardwareError, match="needs measured latency_ms"):
        toy().fit(specs, {})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"peak_tflops": {"fp64": 1}}, "field 'peak_tflops.fp64': unknown field; allowed: bf16"),
        ({"vector_tflops": {"fp16": 1}}, "field 'vector_tflops.fp32': missing"),
        (
            {"efficiency": {**PROFILE["efficiency"], "linear": 1.5}},
            "'efficiency.linear': must be <= 1",
        ),
        ({"default_precision": "int4"}, "field 'default_precision': value 'int4' is not allowed"),
        ({"memory_bandwidth_gbs": -1}, "'memory_bandwidth_gbs': must be > 0"),
        ({"peak_tflops": {}}, "field 'peak_tflops': must name at least one entry"),
    ],
)
def test_profile_errors(changes, message):
    with pytest.raises(ProfileError, match=message):
        toy(**changes)
