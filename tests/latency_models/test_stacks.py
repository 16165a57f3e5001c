"""Software stacks as data of their own: stack files, `stack=` beside `runtime=`, and the
same GPU predicted alike by two profiles once both run the same stack."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models import OptionError, ProfileError
from latency_models.stacks import (
    DEFAULT_STACK,
    RUNTIME_STACKS,
    list_stacks,
    load_stack,
    read_stack,
)

A100S = ("a100-sxm", "a100-sxm4-40gb")  # the 80GB (the V100's fit) and the 40GB (its own)
SAME_GPU_RATIO = 1.5  # issue 29: two profiles of one GPU, in one stack, agree within this


def test_shipped_stacks_load_and_name_the_public_sources_they_timed():
    names = list_stacks()
    assert {DEFAULT_STACK, *RUNTIME_STACKS.values(), "pytorch-1-7-ngc20-10"} <= set(names)
    for name in names:
        stack = load_stack(name)
        assert stack.name == name and stack.runtime in RUNTIME_STACKS
        assert stack.info and stack.info.get("framework") and stack.info.get("sources")
    old = load_stack("pytorch-1-7-ngc20-10")  # its harness times the input's copy too
    assert old.input_copy_gbs > 0 and load_stack(DEFAULT_STACK).input_copy_gbs == 0


def test_stack_file_errors_name_the_field(tmp_path):
    good = {"runtime": "eager", "op_overhead_us": 8}
    assert read_stack(good, "mine.yaml").name == "mine"
    assert read_stack(good, "mine.yaml").layout_conversion == "per_conv"  # eager's default
    cases = [
        ({**good, "runtime": "onnx"}, r"'runtime': value 'onnx' is not allowed"),
        ({**good, "epilogue": "merged"}, r"'epilogue': value 'merged' is not allowed"),
        ({"runtime": "eager"}, r"'op_overhead_us': missing"),
        ({**good, "op_overhead_us": "fast"}, r"'op_overhead_us': expected a number"),
        ({**good, "kernel_launch_us": 3}, r"'kernel_launch_us': unknown field"),
        ({**good, "sources": [{"framework": "pytorch"}]}, r"'sources\[0\]\.file': missing"),
    ]
    for data, message in cases:
        with pytest.raises(ProfileError, match=message):
            read_stack(data, "mine.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("runtime: eager\nop_overhead_us: [1\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_stack(str(path))
    with pytest.raises(lm.HardwareError, match="unknown stack 'pytorch-0'; available: "):
        load_stack("pytorch-0")
    # a profile's own stacks are read the same way, their errors named under `stacks.`
    profile = dict(lm.load_hardware("a100-sxm").profile)
    with pytest.raises(ProfileError, match=r"'stacks\.mine\.op_overhead_us': missing"):
        lm.from_profile({**profile, "stacks": {"mine": {"runtime": "eager"}}}, "x.yaml")
    with pytest.raises(ProfileError, match=r"'stack': value 'mine' is not allowed"):
        lm.from_profile({**profile, "stack": "mine"}, "x.yaml")


def test_predict_with_a_stack_or_with_the_runtime_that_names_one():
    hw = lm.load_hardware("a100-sxm")
    spec = supernet.get_space("mnist-mbv3").to_spec(
        supernet.get_space("mnist-mbv3").sample(np.random.default_rng(0)), batch=1
    )
    options = hw.options()
    assert options["stack"][0] == DEFAULT_STACK and options["runtime"][0] == "eager"
    assert set(list_stacks()) <= set(options["stack"])
    for runtime, stack in RUNTIME_STACKS.items():  # runtime= is the default stack of it
        assert hw.predict(spec, runtime=runtime) == hw.predict(spec, stack=stack)
        assert hw.predict(spec, runtime=runtime, stack=stack) == hw.predict(spec, stack=stack)
    assert hw.predict(spec) == hw.predict(spec, stack=DEFAULT_STACK)
    # an older stack on the same device: slower host, same GPU
    old = hw.predict(spec, stack="pytorch-1-7-ngc20-10")["latency_ms"]
    assert old > 2 * hw.predict(spec)["latency_ms"]
    with pytest.raises(OptionError, match="stack pytorch-2-compiled runs compiled, not eager"):
        hw.predict(spec, runtime="eager", stack="pytorch-2-compiled")
    with pytest.raises(OptionError, match="unknown stack 'pytorch-0'"):
        hw.predict(spec, stack="pytorch-0")
    with pytest.raises(OptionError, match="unknown runtime 'onnxruntime'"):
        hw.predict(spec, runtime="onnxruntime")


def test_the_host_cost_is_the_stacks_and_the_kernel_time_the_devices():
    """The same stack on two GPUs: one host cost per kernel; on a tiny network at batch 1
    (the host sets the pace) the two GPUs take about the same time."""
    b = lm.SpecBuilder((8, 4, 4))
    b.conv("c", 8, kernel=1, src=None)
    spec = b.build()
    h100, a100 = lm.load_hardware("h100-sxm"), lm.load_hardware("a100-sxm")
    stack = h100.stacks[DEFAULT_STACK]
    assert stack is a100.stacks[DEFAULT_STACK]  # one shipped file, shared
    # conv + BatchNorm: two kernels issued by the host, then the last one's GPU time (its
    # kernel time, and a tiny layer on one SM's share of the fitted half-saturation work:
    # about 16 us in all on the A100 with the V100's fit, 8 on the H100)
    host_bound = 2 * stack.op_overhead_us + stack.network_overhead_us
    us = {hw.name: hw.predict(spec)["latency_ms"] * 1e3 for hw in (h100, a100)}
    assert all(host_bound + 1 < t < host_bound + 20 for t in us.values())
    assert us["h100-sxm"] == pytest.approx(us["a100-sxm"], rel=0.25)
    slow = h100.predict(spec, stack="pytorch-1-7-ngc20-10")["latency_ms"] * 1e3
    old = h100.stacks["pytorch-1-7-ngc20-10"]
    assert slow > 2 * old.op_overhead_us + old.network_overhead_us


def same_gpu_ratios(batch: int, stack: str, n: int = 100) -> np.ndarray:
    """max(a/b, b/a) of the two A100 profiles' predictions for n mnist-mbv3 subnets."""
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(0)
    specs = space.spec_batch([space.sample(rng) for _ in range(n)], batch=batch)
    a, b = (lm.load_hardware(h).predict_arrays(specs, stack=stack)["latency_ms"] for h in A100S)
    return np.maximum(a / b, b / a)


@pytest.mark.parametrize("stack", [DEFAULT_STACK, "pytorch-2-compiled", "tensorrt"])
def test_two_profiles_of_one_gpu_agree_in_the_same_stack(stack):
    for batch in (1, 64):
        assert same_gpu_ratios(batch, stack).max() < SAME_GPU_RATIO, (stack, batch)


def test_a_joint_fit_shares_one_stack_between_the_gpus_it_timed():
    """Two GPUs timed by the same (slow) host: GPU A at batch 1 and 64, GPU B at batch 64
    only. Fitted together, the stack's host cost comes from A's small batches and serves B;
    each GPU keeps device parameters of its own."""
    from latency_models.models.gpu import FitRows, fit_jointly

    stack = "pytorch-1-6-pycls"  # a shipped stack, shared by both fits
    shipped = load_stack(stack)
    slow = {**shipped.to_profile(), "op_overhead_us": 25.0, "network_overhead_us": 40.0}
    slow.pop("name")
    base = {
        "kind": "gpu",
        "peak_tflops": {"fp16": 100, "fp32": 10},
        "vector_tflops": {"fp16": 10, "fp32": 10},
        "kernel_launch_us": 3.0,
        "stack": stack,
        "efficiency": dict.fromkeys(lm.LAYER_CLASSES, 0.5),
        "memory_efficiency": 0.8,
    }
    gpus = {"gpu-a": {"memory_bandwidth_gbs": 900}, "gpu-b": {"memory_bandwidth_gbs": 3000}}
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(2)
    parts, truths = [], {}
    for name, sheet in gpus.items():
        profile = {**base, **sheet, "name": name}
        truth = lm.from_profile(
            {**profile, "memory_efficiency": 0.5, "stacks": {stack: slow}}, f"{name}.yaml"
        )
        batches = (1, 64) if name == "gpu-a" else (64,)
        specs = [space.to_spec(space.sample(rng), batch=b) for b in batches for _ in range(20)]
        y = truth.predict_arrays(specs)["latency_ms"]
        start = lm.from_profile(profile, f"{name}.yaml")
        parts.append(FitRows(start, specs, y, stacks=[stack] * len(specs)))
        truths[name] = truth
    result = fit_jointly(parts, prior_weight=0.01)
    assert all(b["latency_ms_mape"] > 0.2 for b in result.before)
    assert all(a["latency_ms_mape"] < 0.05 for a in result.after)
    fitted = result.stacks[stack]  # one stack for both: no copy in either profile
    assert fitted.op_overhead_us == pytest.approx(25.0, rel=0.15)
    assert all("stacks" not in p for p in result.profiles)
    for name, profile in zip(gpus, result.profiles, strict=True):
        assert profile["memory_bandwidth_gbs"] == gpus[name]["memory_bandwidth_gbs"]
        assert profile["stack"] == stack and profile["kernel_launch_us"] > 0


def test_a_joint_fit_ranks_within_each_gpu_and_holds_its_fixed_parameters(monkeypatch):
    """Rank groups never span two GPUs (their times per image are not comparable), even under
    one key; a GPU's `fixed` parameters keep their start while the other GPU's move."""
    from latency_models.models import gpu
    from latency_models.models.gpu import FitRows, fit_jointly

    base = {
        "kind": "gpu",
        "peak_tflops": {"fp16": 100, "fp32": 10},
        "vector_tflops": {"fp16": 10, "fp32": 10},
        "kernel_launch_us": 3.0,
        "efficiency": dict.fromkeys(lm.LAYER_CLASSES, 0.5),
        "memory_efficiency": 0.8,
    }
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(3)
    parts = []
    # a stack each (a shared one would carry A's held misfit over to B); slow memory
    for name, stack in (("gpu-a", "pytorch-1-6-pycls"), ("gpu-b", "pytorch-2-eager")):
        profile = {**base, "memory_bandwidth_gbs": 30, "stack": stack, "name": name}
        truth = lm.from_profile({**profile, "memory_efficiency": 0.5}, f"{name}.yaml")
        specs = [space.to_spec(space.sample(rng), batch=64) for _ in range(8)]
        y = truth.predict_arrays(specs)["latency_ms"]
        start = lm.from_profile(profile, f"{name}.yaml")
        fixed = ["memory_efficiency"] if name == "gpu-a" else []
        parts.append(FitRows(start, specs, y, rank_groups=["family"] * 8, fixed=fixed))
    seen = []

    def spy(specs, measured, groups, weight):
        seen.append(len(specs))
        return rank_pairs(specs, measured, groups, weight)

    rank_pairs = gpu.rank_pairs
    monkeypatch.setattr(gpu, "rank_pairs", spy)
    result = fit_jointly(parts, prior_weight=0.01, rank_weight=0.3)
    assert seen == [8, 8]  # one call per GPU: pairs of one GPU's rows only
    held, free = (p["memory_efficiency"] for p in result.profiles)
    assert held == 0.8 and abs(free - 0.8) > 0.1  # B's moved (the truth's is 0.5)
    with pytest.raises(lm.HardwareError, match=r"cannot hold \['warp_size'\]"):
        a = parts[0]
        fit_jointly([FitRows(a.model, a.specs, a.latency_ms, fixed=["warp_size"])])


def test_the_fit_script_fits_together_the_gpus_that_share_a_stack():
    """experiments/fit_gpu_profiles.py: GPUs whose fit rows share a stack, directly or
    through another GPU, form one joint fit; a GPU with no rows of its own fits nothing."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
    from fit_gpu_profiles import components

    def gpu(name: str, *stacks: str) -> SimpleNamespace:
        rows = [SimpleNamespace(stack=s) for s in stacks]
        return SimpleNamespace(name=name, fitted=bool(rows), fit_rows=rows)

    gpus = [gpu("a", "s1"), gpu("b", "s2"), gpu("c", "s1", "s2"), gpu("d", "s3"), gpu("e")]
    groups = [[p.name for p in group] for group in components(gpus)]
    assert groups == [["a", "b", "c"], ["d"]]
