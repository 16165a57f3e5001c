"""The locally measured table model, and the shipped local-cpu profile."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models import MissingEntryError, UnsupportedSpecError


def _spec() -> lm.NetworkSpec:
    space = supernet.get_space("mnist-mbv3")
    return space.to_spec(space.smallest())


def _profile(spec: lm.NetworkSpec, **calibration) -> dict:
    model = lm.from_profile({"kind": "measured", "tables": {1: {"x": 1.0}}}, "p.yaml")
    keys = [model.key_of(sig, i == 0) for i, sig in enumerate(spec.arrays.blocks)]
    return {
        "kind": "measured",
        "tables": {1: {k: 0.1 * (i + 1) for i, k in enumerate(keys)}},
        "calibration": calibration,
    }


def test_sum_scale_and_overheads():
    spec = _spec()
    n = len(spec.blocks)
    raw = sum(0.1 * (i + 1) for i in range(n))
    hw = lm.from_profile(_profile(spec), "p.yaml")
    assert hw.predict(spec)["latency_ms"] == pytest.approx(raw)
    cal = lm.from_profile(_profile(spec, scale=1.5, overhead_ms=0.2, per_block_ms=0.01), "p")
    assert cal.predict(spec)["latency_ms"] == pytest.approx(1.5 * raw + 0.2 + 0.01 * n)


def test_generic_keys_name_every_attr():
    spec = _spec()
    hw = lm.from_profile(_profile(spec), "p.yaml")
    key = hw.key_of(spec.arrays.blocks[1], False)
    assert key.startswith("mbconv-input:6x6x8-output:6x6x8-act:relu-expand:1-kernel:3-mid:8")
    assert key.endswith("-se:0-skip:1-stride:1")


def test_missing_entries_and_batches_are_errors():
    spec = _spec()
    profile = _profile(spec)
    table = profile["tables"][1]
    dropped = sorted(table)[0]
    del table[dropped]
    hw = lm.from_profile(profile, "p.yaml")
    with pytest.raises(MissingEntryError, match="nearest keys"):
        hw.predict(spec)
    with pytest.raises(UnsupportedSpecError, match="no table for batch 4; allowed: \\[1\\]"):
        lm.from_profile(_profile(spec), "p.yaml").predict(spec.with_batch(4))


def test_fit_finds_scale_and_overheads():
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(0)
    hw = lm.load_hardware("local-cpu")
    specs = [space.to_spec(space.sample(rng)) for _ in range(20)]
    sums = np.array([hw._block_sums(lm.SpecBatch.of([s]))[0] for s in specs])
    blocks = np.array([len(s.blocks) for s in specs])
    measured = 1.3 * sums + 0.4 + 0.02 * blocks
    fit = hw.fit(specs, {"latency_ms": measured})
    cal = fit.profile["calibration"]
    assert cal["scale"] == pytest.approx(1.3, rel=1e-3)
    assert cal["overhead_ms"] == pytest.approx(0.4, rel=1e-2)
    assert fit.after["latency_ms_mape"] < 1e-4


def test_shipped_local_cpu_covers_the_mnist_space():
    hw = lm.load_hardware("local-cpu")
    assert hw.kind == "measured" and "mnist-mbv3" in hw.measurement["spaces"]
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(1)
    specs = [space.to_spec(space.sample(rng)) for _ in range(100)]
    specs += [space.to_spec(space.largest()), space.to_spec(space.smallest())]
    latency = hw.predict_arrays(specs)["latency_ms"]
    assert np.all(latency > 0)
    assert latency[-2] > latency[-1]  # the largest subnet is slower than the smallest


def test_fit_keeps_the_table_when_measurements_ignore_it():
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(2)
    hw = lm.load_hardware("local-cpu")
    specs = [space.to_spec(space.sample(rng)) for _ in range(6)]
    fit = hw.fit(specs, {"latency_ms": np.array([len(s.layers) * 0.05 for s in specs])})
    assert fit.profile["calibration"]["scale"] > 0
    assert lm.from_profile(fit.profile, "p.yaml").predict_many(specs)  # a valid profile
