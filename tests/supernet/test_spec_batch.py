"""A space's SpecBatch, assembled from stored parts, against the NetworkSpec path: the same rows,
and the same costs on every device that can cost the space."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models import SpecBatch
from latency_models.errors import HardwareError

SPACES = supernet.list_spaces()


def archs_of(space: supernet.SearchSpace, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)] + [space.largest(), space.smallest()]


@pytest.mark.parametrize("name", SPACES)
def test_rows_and_arrays_equal_those_of_to_spec(name: str) -> None:
    space = supernet.get_space(name)
    archs = archs_of(space, 150, seed=1)
    fast = space.spec_batch(archs, batch=4)
    ref = SpecBatch.of([space.to_spec(a, 4) for a in archs])
    for field in ("columns", "counts", "starts", "batch", "macs", "params", "input_shapes"):
        assert np.array_equal(getattr(fast, field), getattr(ref, field)), field
    assert np.array_equal(fast.block_counts, ref.block_counts)
    for mine, theirs in zip(fast.arrays, ref.arrays, strict=True):
        assert np.array_equal(mine.columns, theirs.columns)
        assert (mine.macs, mine.params, mine.input_shape, mine.name) == (
            theirs.macs,
            theirs.params,
            theirs.input_shape,
            theirs.name,
        )
        assert (mine.blocks, mine.block_keys, mine.block_strides) == (
            theirs.blocks,
            theirs.block_keys,
            theirs.block_strides,
        )
    # a second generation reuses the stored parts, new archs among them
    more = archs_of(space, 50, seed=2)
    again = space.spec_batch(more)
    assert np.array_equal(again.columns, SpecBatch.of([space.to_spec(a) for a in more]).columns)


def device_cases() -> list[tuple[str, str]]:
    return [(space, hw) for space in SPACES for hw in lm.list_hardware()]


@pytest.mark.parametrize(("space_name", "device"), device_cases())
def test_every_device_costs_both_paths_alike(space_name: str, device: str) -> None:
    space = supernet.get_space(space_name)
    hw = lm.load_hardware(device)
    batch = getattr(hw, "batch", 1)
    low_high = hw.input_resolutions()
    archs = archs_of(space, 40, seed=3)
    if low_high is not None and all(space.resolution_gene in a for a in archs):
        archs = [a for a in archs if low_high[0] <= a[space.resolution_gene] <= low_high[1]]
    option_sets = [{}]
    # every runtime (a GPU's, an MCU's tflm), and a precision and layout other than the default
    option_sets += [{"runtime": rt} for rt in hw.options().get("runtime", ())[1:]]
    if hw.kind == "gpu":
        option_sets += [{"precision": hw.options()["precision"][-1], "layout": "nchw"}]
    for options in option_sets:
        try:
            expected = hw.predict_arrays([space.to_spec(a, batch) for a in archs], **options)
        except HardwareError as err:  # a device that cannot cost this space refuses both
            with pytest.raises(type(err)):
                lm.load_hardware(device).predict_arrays(space.spec_batch(archs, batch), **options)
            continue
        fresh = lm.load_hardware(device)  # no cached entries from the other path
        got = fresh.predict_arrays(space.spec_batch(archs, batch), **options)
        assert sorted(got) == sorted(expected)
        for metric, values in expected.items():
            assert np.array_equal(got[metric], values), (metric, options)
