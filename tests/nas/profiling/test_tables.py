"""`build_lut` on the tiny MNIST space at resolution 12 (a second or two), and the checks it makes
before it times or writes anything."""

from __future__ import annotations

import re

import pytest

import latency_models as lm
import supernet
from nas import profiling
from nas.profiling.tables import _base_profile

FAST = {"warmup": 1, "repeats": 2, "rounds": 1, "progress": False}


@pytest.mark.parametrize("name", ["local-cpu", "my_cpu.v2", "A1"])
def test_a_plain_profile_name_is_accepted(name):
    profiling.check_profile_name(name)


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "..", "a..b", "/abs", "", "a\\b", ".hidden", "x.yaml", "x.YML", "a b"]
)
def test_a_profile_name_that_is_a_path_or_a_file_is_refused(name):
    with pytest.raises(
        profiling.HardwareError, match=re.escape(f"profile name {name!r} is not allowed")
    ):
        profiling.check_profile_name(name)


def test_build_lut_refuses_bad_settings_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_PROFILE_DIR", str(tmp_path))
    with pytest.raises(profiling.HardwareError, match=re.escape("profile name '../x'")):
        profiling.build_lut("mnist-mbv3", name="../x", **FAST)
    with pytest.raises(profiling.HardwareError, match="statistic 'mean' is not allowed"):
        profiling.build_lut("mnist-mbv3", statistic="mean", **FAST)
    assert list(tmp_path.iterdir()) == []


def test_a_new_table_starts_empty_and_merging_keeps_only_measured_profiles(tmp_path):
    path = tmp_path / "t.yaml"
    fresh = _base_profile(path, "t", merge=True)
    assert fresh["name"] == "t" and fresh["kind"] == "measured" and fresh["tables"] == {}
    lm.dump_profile(lm.load_hardware("a100-sxm").profile, path)
    with pytest.raises(profiling.HardwareError, match="is a gpu profile, not measured"):
        _base_profile(path, "t", merge=True)
    assert _base_profile(path, "t", merge=False)["tables"] == {}  # not merged: not read


def test_build_lut_times_every_block_then_calibrates_then_merges(tmp_path):
    out = tmp_path / "lut.yaml"
    result = profiling.build_lut(
        "mnist-mbv3", resolutions=[12], calibrate_n=5, out=out, name="tiny", **FAST
    )
    assert result.path == out and result.space == "mnist-mbv3" and result.batch == 1
    assert result.blocks > 0 and result.entries == result.blocks
    hw = lm.load_hardware(str(out))
    assert hw.kind == "measured" and hw.name == "tiny"
    assert len(hw.tables[1]) == result.blocks and all(v > 0 for v in hw.tables[1].values())
    assert hw.measurement["repeats"] == 2 and hw.measurement["spaces"] == ["mnist-mbv3"]
    cal = result.calibration
    assert cal["n"] == 5 and cal["space"] == "mnist-mbv3" and cal["resolutions"] == [12]
    assert len(cal["arch_ids"]) == 5 and len(cal["archs"]) == 5
    assert cal["scale"] > 0 and 0 <= cal["mape_calibrated"] < 1  # in-sample: timing noise only
    # each calibration subnet against a calibration on the others: the intervals' residuals
    residuals = hw.uncertainty["latency_ms"]
    assert len(residuals.log_ratios) == 5 and "leave-one-out" in residuals.rows
    space = supernet.get_space("mnist-mbv3")
    cost = hw.predict(space.to_spec(space.from_json(cal["archs"][0])), coverage=0.9)
    assert cost["latency_ms_low"] < cost["latency_ms_high"]

    again = profiling.build_lut("mnist-mbv3", resolutions=[16], calibrate_n=0, out=out, **FAST)
    assert again.entries > result.entries  # the r=12 entries are kept beside the r=16 ones
    assert set(hw.tables[1]) < set(lm.load_hardware(str(out)).tables[1])
    assert not lm.load_hardware(str(out)).uncertainty  # not calibrated again: no residuals
