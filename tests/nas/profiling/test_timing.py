"""Sampling archs and timing them end to end, with runs of a few milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

import supernet
from latency_models.torch.measure import Timing
from nas import profiling

SPACE = supernet.get_space("mnist-mbv3")


def test_sample_archs_gives_distinct_archs_outside_the_excluded_ones():
    archs = profiling.sample_archs(SPACE, 6, seed=3, resolutions=[12, 16])
    ids = [SPACE.arch_id(a) for a in archs]
    assert len(set(ids)) == 6 and {a["r"] for a in archs} <= {12, 16}
    assert [
        SPACE.arch_id(a) for a in profiling.sample_archs(SPACE, 6, seed=3, resolutions=[12, 16])
    ] == ids
    others = profiling.sample_archs(SPACE, 6, seed=3, exclude=set(ids[:3]), resolutions=[12, 16])
    assert not {SPACE.arch_id(a) for a in others} & set(ids[:3])


class OneArchSpace:
    """A space with a single arch."""

    name = "one"

    def sample(self, rng):
        return {"ks": [3]}

    def arch_id(self, arch):
        return "only"


def test_sample_archs_gives_up_when_the_space_has_too_few_archs():
    assert profiling.sample_archs(OneArchSpace(), 1, seed=0) == [{"ks": [3]}]
    with pytest.raises(profiling.HardwareError, match="could not sample 2 distinct archs of 'one'"):
        profiling.sample_archs(OneArchSpace(), 2, seed=0)


def test_time_archs_spreads_the_repeats_over_rounds_and_copies():
    archs = profiling.sample_archs(SPACE, 2, seed=0, resolutions=[12])
    timing = Timing("cpu", "fp32", threads=1, warmup=1, repeats=3)
    copies = profiling.time_archs(SPACE, archs, timing, 1, rounds=2, instances=2, progress=False)
    assert len(copies) == 2 and all(len(c) == 2 for c in copies)
    # ceil(3 / 2) = 2 repeats in each of 2 rounds
    assert all(r.repeats == 4 and r.min_ms > 0 for c in copies for r in c)


def test_measure_writes_one_row_per_subnet(tmp_path):
    out = tmp_path / "m.csv"
    result = profiling.measure(
        "mnist-mbv3", n=3, resolutions=[12], warmup=1, repeats=2, rounds=1, statistic="min",
        out=out, progress=False,
    )  # fmt: skip
    assert result.path == out and len(result.rows) == 3 and result.processor
    data = profiling.load_measurements([out])
    np.testing.assert_allclose(data.metrics["latency_ms"], result.latencies)
    assert all(r["statistic"] == "min" for r in data.rows)
    assert [r["latency_ms"] for r in result.rows] == [r["latency_min_ms"] for r in result.rows]


def test_measure_refuses_a_bad_statistic_before_timing(tmp_path):
    with pytest.raises(profiling.HardwareError, match="statistic 'mean' is not allowed"):
        profiling.measure("mnist-mbv3", n=1, statistic="mean", out=tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
