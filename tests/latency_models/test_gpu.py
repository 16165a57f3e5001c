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
    with pytest.raises(
        OptionError, match=r"option 'sparsity': not an option.*allowed: layout, precision, runtime"
    ):
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


def test_a_device_with_faster_memory_than_the_datasheet_is_fitted_by_its_bandwidth():
    """memory_efficiency stops at 1, so a GPU whose memory outruns the base profile's whole
    bandwidth is fitted by `bandwidth_scale` (asked for by name; a calibration keeps the
    datasheet's bandwidth)."""
    specs = []  # wide linear layers at small batches: reading the weights sets the time
    for width in (2000, 3000, 4000, 6000):
        for batch in (1, 4, 16):
            b = SpecBuilder((width, 1, 1), batch=batch)
            b.linear("fc", width, bias=True, src=None)
            specs.append(b.build())
    truth = toy(memory_bandwidth_gbs=3000)  # memory_efficiency is already 1 in the toy
    measured = {"latency_ms": truth.predict_arrays(specs)["latency_ms"]}
    capped = toy().fit(specs, measured, free=["memory_efficiency"])
    assert capped.profile["memory_efficiency"] == 1.0 and capped.after["latency_ms_mape"] > 0.3
    fit = toy().fit(specs, measured, free=["bandwidth_scale"], prior_weight=0.01)
    assert fit.after["latency_ms_mape"] < 0.01
    assert fit.profile["memory_bandwidth_gbs"] == pytest.approx(3000, rel=0.02)
    assert toy().fit(specs, measured).profile["memory_bandwidth_gbs"] == 1000  # the datasheet's


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


# ----- runtimes: eager PyTorch, torch.compile, TensorRT ----------------------------------------

RUNTIMES = {
    "eager": {"epilogue": "separate", "kernel_launch_us": 5, "op_overhead_us": 0},
    "compiled": {"epilogue": "fused", "kernel_launch_us": 5, "op_overhead_us": 0},
    "tensorrt": {"epilogue": "in_conv", "kernel_launch_us": 5, "op_overhead_us": 0},
}


def runtimes_toy(**runtimes) -> lm.CostModel:
    legacy = {
        k: v for k, v in PROFILE.items() if k not in ("kernel_launch_us", "network_overhead_us")
    }
    table = {name: {**RUNTIMES[name], **runtimes.get(name, {})} for name in RUNTIMES}
    return lm.from_profile({**legacy, "runtimes": table}, "toy.yaml")


def residual_block() -> lm.NetworkSpec:
    """conv+BN, then conv+BN+ReLU, conv+BN and the residual add: tiny (launch-bound)."""
    b = SpecBuilder((8, 4, 4))
    stem = b.conv("c0", 8, kernel=1, src=None)
    first = b.conv("c1", 8, kernel=1, act="relu")
    second = b.conv("c2", 8, kernel=1, src=first)
    b.add("add", second, stem)
    return b.build()


def test_each_runtime_runs_the_epilogue_as_documented():
    hw, spec = runtimes_toy(), residual_block()
    latency = {rt: hw.predict(spec, runtime=rt)["latency_ms"] for rt in RUNTIMES}
    # kernels: eager c0+BN, c1+BN+ReLU, c2+BN, add = 8; compiled: each conv and its
    # epilogue, the add fused into c2's = 6; TensorRT: one per conv = 3 (5 us launches;
    # the work itself is negligible)
    assert latency["eager"] == pytest.approx(8 * 0.005, rel=0.01)
    assert latency["compiled"] == pytest.approx(6 * 0.005, rel=0.01)
    assert latency["tensorrt"] == pytest.approx(3 * 0.005, rel=0.01)
    assert hw.options()["runtime"] == ("eager", "compiled", "tensorrt")  # eager by default
    assert hw.predict(spec)["latency_ms"] == latency["eager"]


def test_a_slow_host_sets_the_pace_of_small_kernels():
    """Host 20 us per kernel, GPU 5 us: the GPU waits for each kernel to be issued, so the
    network takes the host's time plus the last kernel's; at a large batch the GPU's work
    exceeds the host's and the host cost hides behind it."""
    slow_host = runtimes_toy(eager={"op_overhead_us": 20})
    spec = residual_block()
    assert slow_host.predict(spec)["latency_ms"] == pytest.approx(8 * 0.020 + 0.005, rel=0.01)
    big = linear_net(batch=4096)  # 164 us of GPU work in one kernel
    fast, slow = runtimes_toy().predict(big), slow_host.predict(big)
    assert slow["latency_ms"] - fast["latency_ms"] == pytest.approx(0.020, rel=0.01)


def test_runtime_options_and_profile_errors():
    hw = runtimes_toy()
    with pytest.raises(OptionError, match="unknown runtime 'onnxruntime'"):
        hw.predict(linear_net(), runtime="onnxruntime")
    one = lm.from_profile({**PROFILE, "fuse_bn_act": False}, "toy.yaml")  # an older profile
    assert one.options()["runtime"] == ("eager",)
    with pytest.raises(OptionError, match="toy-gpu has no tensorrt runtime in its profile"):
        one.predict(linear_net(), runtime="tensorrt")
    with pytest.raises(ProfileError, match="'kernel_launch_us': give it per runtime"):
        lm.from_profile({**PROFILE, "runtimes": {"eager": RUNTIMES["eager"]}}, "toy.yaml")
    bad = {**RUNTIMES, "eager": {**RUNTIMES["eager"], "epilogue": "merged"}}
    legacy = {
        k: v for k, v in PROFILE.items() if k not in ("kernel_launch_us", "network_overhead_us")
    }
    with pytest.raises(ProfileError, match=r"'runtimes\.eager\.epilogue': value 'merged'"):
        lm.from_profile({**legacy, "runtimes": bad}, "toy.yaml")


def test_eager_transposes_each_nchw_convolution_and_compiled_converts_once():
    b = SpecBuilder((64, 32, 32), batch=8)
    b.conv("c", 64, kernel=3, src=None)
    spec = b.build()
    hw = runtimes_toy()
    ms = {
        (rt, layout, p): hw.predict(spec, runtime=rt, layout=layout, precision=p)["latency_ms"]
        for rt in ("eager", "compiled")
        for layout in ("nchw", "nhwc")
        for p in ("fp16", "fp32")
    }
    # eager fp16: the input and the output (64 x 32 x 32 x 8 elements of 2 bytes each) are
    # transposed there and back, 4 MiB at 1 TB/s, in two more 5 us kernels. The passes add
    # to the convolution's time (separate kernels), even though it is memory-bound here too.
    transposes = 2 * 2 * 64 * 32 * 32 * 8 * 2 / 1e12 * 1e3 + 2 * 0.005
    assert ms["eager", "nchw", "fp16"] - ms["eager", "nhwc", "fp16"] == pytest.approx(transposes)
    assert ms["compiled", "nchw", "fp16"] == ms["compiled", "nhwc", "fp16"]  # converted once
    assert ms["eager", "nchw", "fp32"] == ms["eager", "nhwc", "fp32"]  # CUDA cores: no transpose
    once = runtimes_toy(eager={"layout_conversion": "once"})
    assert once.predict(spec, layout="nchw")["latency_ms"] == ms["eager", "nhwc", "fp16"]
    # grouped convolutions are cuDNN's too, and TF32 runs on the tensor cores: both pay;
    # a 1x1 convolution is a GEMM in either layout: it does not
    tf32 = lm.from_profile(
        {**runtimes_toy().profile, "peak_tflops": {"fp16": 100, "fp32": 10, "tf32": 50},
         "vector_tflops": {"fp16": 10, "fp32": 10, "tf32": 10}},
        "toy.yaml",
    )  # fmt: skip
    for kernel, groups, pays in ((3, 4, True), (1, 1, False)):
        b = SpecBuilder((64, 32, 32), batch=8)
        b.conv("c", 64, kernel=kernel, groups=groups, src=None)
        layer = b.build()
        for precision in ("fp16", "tf32"):
            nchw, nhwc = (
                tf32.predict(layer, layout=lay, precision=precision)["latency_ms"]
                for lay in ("nchw", "nhwc")
            )
            elements = 2 * 64 * 32 * 32 * 8 * (2 if precision == "fp16" else 4)
            paid = 2 * elements / 1e12 * 1e3 + 2 * 0.005
            assert nchw - nhwc == (pytest.approx(paid) if pays else 0)
    with pytest.raises(ProfileError, match=r"runtimes\.eager\.layout_conversion"):
        runtimes_toy(eager={"layout_conversion": "sometimes"})


def test_winograd_speeds_up_dense_3x3_stride_1_convolutions_at_fp32():
    def conv_ms(hw: lm.CostModel, stride: int, precision: str) -> float:
        b = SpecBuilder((256, 32, 32), batch=64)
        b.conv("c", 256, kernel=3, stride=stride, bn=False, src=None)
        return hw.predict(b.build(), precision=precision)["latency_ms"] - 0.005  # no launch

    direct, winograd = toy(), toy(winograd_speedup=2.25)
    # 2 x 604 M MACs x 64 images at 10 TFLOPS x 0.5: compute-bound, 15.5 ms
    assert conv_ms(direct, 1, "fp32") == pytest.approx(2 * 256 * 256 * 9 * 1024 * 64 / 5e12 * 1e3)
    assert conv_ms(winograd, 1, "fp32") == pytest.approx(conv_ms(direct, 1, "fp32") / 2.25)
    assert conv_ms(winograd, 2, "fp32") == conv_ms(direct, 2, "fp32")  # stride 2: direct
    assert conv_ms(winograd, 1, "fp16") == conv_ms(direct, 1, "fp16")  # tensor cores: direct
    with pytest.raises(ProfileError, match=r"winograd_speedup.*must be >= 1"):
        toy(winograd_speedup=0.5)


def test_waves_quantize_a_layer_that_cannot_fill_the_sms():
    """132 SMs, 128 x 128 tiles: a 1x1 conv of 128 x 64 x 64 outputs at batch 1 makes 32
    tiles (one partial wave, 32/132 of the GPU busy); at batch 33 it makes 1,056 = 8 full
    waves. Per image the small batch costs 132/32 times as much compute."""
    hw = lm.from_profile({**PROFILE, "sm_count": 132, "kernel_launch_us": 0}, "toy.yaml")
    b = SpecBuilder((128, 64, 64))
    b.conv("pw", 128, kernel=1, bn=False, src=None)
    spec = b.build()
    memory_free = lm.from_profile(
        {**PROFILE, "sm_count": 132, "kernel_launch_us": 0, "memory_bandwidth_gbs": 1e9},
        "toy.yaml",
    )
    one = memory_free.predict(spec)["latency_ms"]
    many = memory_free.predict(spec.with_batch(33))["latency_ms"]
    assert one / (many / 33) == pytest.approx(132 / 32, rel=1e-6)
    assert hw.predict(spec)["latency_ms"] >= one


def test_calibration_recovers_host_and_gpu_overheads_per_runtime():
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(1)
    specs = [space.to_spec(space.sample(rng), batch=int(rng.choice([1, 64]))) for _ in range(60)]
    truth = runtimes_toy(
        eager={"op_overhead_us": 15, "kernel_launch_us": 3},
        compiled={"op_overhead_us": 4, "kernel_launch_us": 3},
    )
    runtimes = ["eager", "compiled"] * 30
    measured = np.array(
        [truth.predict(s, runtime=rt)["latency_ms"] for s, rt in zip(specs, runtimes, strict=True)]
    )
    # a host cost below the GPU's time per kernel is hidden (no gradient): start from a
    # profile whose host costs are in the right range, as shipped profiles are
    start = runtimes_toy(eager={"op_overhead_us": 8}, compiled={"op_overhead_us": 8})
    fit = start.fit(specs, {"latency_ms": measured}, runtimes=runtimes, prior_weight=0.01)
    assert fit.before["latency_ms_mape"] > 0.3 and fit.after["latency_ms_mape"] < 0.05
    fitted = fit.profile["runtimes"]
    assert fitted["eager"]["op_overhead_us"] == pytest.approx(15, rel=0.1)
    assert fitted["compiled"]["op_overhead_us"] == pytest.approx(4, rel=0.2)
    unmeasured = RUNTIMES["tensorrt"] | {"network_overhead_us": 0.0, "layout_conversion": "once"}
    assert fitted["tensorrt"] == unmeasured
    only = runtimes_toy().fit(
        specs, {"latency_ms": measured}, runtimes=runtimes, free=["eager.op_overhead_us"]
    )
    assert only.profile["efficiency"] == runtimes_toy().profile_with({})["efficiency"]
    with pytest.raises(lm.HardwareError, match=r"cannot fit \['warp_size'\]"):
        runtimes_toy().fit(specs, {"latency_ms": measured}, runtimes=runtimes, free=["warp_size"])


def _one_conv(channels: int, groups: int, batch: int = 64, out: int = 0) -> lm.NetworkSpec:
    b = SpecBuilder((channels, 56, 56), batch=batch)
    b.conv("c", out or channels, kernel=3 if groups > 1 else 1, groups=groups, src=None)
    return b.build()


def test_rank_pairs_orders_each_group_slower_first_and_skips_noise():
    from latency_models.models.gpu import RANK_MIN_GAP, rank_pairs

    specs = [_one_conv(64, 64, batch) for batch in (1, 2, 1, 1)]
    # per image: 4, 2.5, 4 x (1 + gap / 2), 9; groups a, a, a, b
    measured = np.array([4.0, 5.0, 4.0 * (1 + RANK_MIN_GAP / 2), 9.0])
    first, second, scale = rank_pairs(specs, measured, ["a", "a", "a", "b"], 2.0)
    assert sorted(zip(first.tolist(), second.tolist(), strict=True)) == [
        (0, 1),
        (2, 1),
    ]  # 0~2: noise
    assert scale == pytest.approx(np.sqrt(2.0 * 4 / 2))
    assert len(rank_pairs(specs, measured, None, 1.0)[0]) == 0
    assert len(rank_pairs(specs, measured, ["a"] * 4, 0.0)[0]) == 0
    with pytest.raises(lm.HardwareError, match="rank_groups: 3 keys for 4 measurements"):
        rank_pairs(specs, measured, ["a"] * 3, 1.0)


def test_the_ranking_term_keeps_a_group_in_its_measured_order():
    """Two identical depthwise networks measured 1.1x and 0.7x a pointwise one: least squares
    alone predicts their geometric mean, faster than the pointwise network; ranking the first
    against the pointwise one (as measured: slower) moves it above."""
    dw, pw = _one_conv(1024, 1024), _one_conv(1024, 1, out=128)
    specs = [dw, dw, pw]
    start = toy(memory_bandwidth_gbs=100_000)  # compute sets every time
    t_pw = start.predict(pw)["latency_ms"]
    measured = {"latency_ms": np.array([1.1 * t_pw, 0.7 * t_pw, t_pw])}
    options = {"free": ["efficiency.depthwise"], "prior_weight": 0.01}
    plain = lm.from_profile(start.fit(specs, measured, **options).profile, "a")
    assert plain.predict(dw)["latency_ms"] == pytest.approx(np.sqrt(0.77) * t_pw, rel=0.01)
    ranked_fit = start.fit(
        specs, measured, rank_groups=["g", None, "g"], rank_weight=1.0, **options
    )
    ranked = lm.from_profile(ranked_fit.profile, "b")
    assert ranked.predict(dw)["latency_ms"] > t_pw
