"""The Note10 look-up-table model: keys in the table's format, sums, interpolation, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import latency_models as lm
import supernet
from latency_models import MissingEntryError, UnsupportedSpecError

NOTE10 = Path(lm.PROFILE_DIR) / "note10"


def table(r: int) -> dict[str, float]:
    data = yaml.safe_load((NOTE10 / f"{r}_lookup_table.yaml").read_text())
    return {k: v["mean"] for k, v in data.items()}


def smallest_keys(r: int) -> list[str]:
    """ofa-mbv3-w1.2's smallest subnet (kernel 3, expand 3, depth 2) written out by hand."""
    s = [r // 2, r // 4, r // 8, r // 16, r // 16, r // 32]
    keys = [
        f"Conv-input:{r}x{r}x3-output:{s[0]}x{s[0]}x24",
        f"expanded_conv-input:{s[0]}x{s[0]}x24-output:{s[0]}x{s[0]}x24-expand:24-kernel:3-stride:1"
        "-idskip:1-se:0-hs:0",
    ]
    stages = [
        (24, 32, 2, 0, 0),
        (32, 48, 2, 1, 0),
        (48, 96, 2, 0, 1),
        (96, 136, 1, 1, 1),
        (136, 192, 2, 1, 1),
    ]
    for i, (cin, cout, stride, se, hs) in enumerate(stages):
        a, b = s[i], s[i + 1]
        keys.append(
            f"expanded_conv-input:{a}x{a}x{cin}-output:{b}x{b}x{cout}-expand:{cin * 3}-kernel:3"
            f"-stride:{stride}-idskip:0-se:{se}-hs:{hs}"
        )
        keys.append(
            f"expanded_conv-input:{b}x{b}x{cout}-output:{b}x{b}x{cout}-expand:{cout * 3}"
            f"-kernel:3-stride:1-idskip:1-se:{se}-hs:{hs}"
        )
    f = s[5]
    keys += [
        f"Conv_1-input:{f}x{f}x192-output:{f}x{f}x1152",
        f"AvgPool2D-input:{f}x{f}x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
    ]
    return keys


@pytest.mark.parametrize("r", [160, 224])
def test_sum_of_table_entries(r):
    space = supernet.get_space("ofa-mbv3-w1.2")
    arch = {**space.smallest(), "r": r}
    expected = sum(table(r)[k] for k in smallest_keys(r))
    cost = lm.load_hardware("note10").predict(space.to_spec(arch))
    assert cost["latency_ms"] == pytest.approx(expected, rel=1e-12)


def test_every_tabulated_subnet_is_covered():
    space = supernet.get_space("ofa-mbv3-w1.2")
    hw = lm.load_hardware("note10")
    specs = []
    for r in (160, 176, 192, 208, 224):
        for k in (3, 5, 7):
            for e in (3, 4, 6):
                arch = {"ks": [k] * 20, "e": [e] * 20, "d": [4] * 5, "r": r}
                specs.append(space.to_spec(arch))
    costs = hw.predict_many(specs)
    assert all(c["latency_ms"] > 0 for c in costs)


def test_interpolation_between_resolutions():
    space = supernet.get_space("ofa-mbv3-w1.2")
    hw = lm.load_hardware("note10")
    arch = space.smallest()
    at = {r: hw.predict(space.to_spec({**arch, "r": r}))["latency_ms"] for r in (160, 168, 176)}
    assert at[160] < at[168] < at[176]
    # the first conv alone: 168 -> 84x84 output, interpolated in input pixels 160^2..176^2
    t = (168**2 - 160**2) / (176**2 - 160**2)
    conv160 = table(160)["Conv-input:160x160x3-output:80x80x24"]
    conv176 = table(176)["Conv-input:176x176x3-output:88x88x24"]
    sig = space.to_spec({**arch, "r": 168}).arrays.blocks[0]
    assert hw._interpolate(168, sig, True, 1) == pytest.approx(conv160 + t * (conv176 - conv160))


def test_resolution_outside_tables_is_an_error():
    space = supernet.get_space("ofa-mbv3-w1.2")
    spec = space.to_spec({**space.smallest(), "r": 128})
    with pytest.raises(UnsupportedSpecError, match="resolution 128 is outside its tables"):
        lm.load_hardware("note10").predict(spec)


def test_missing_key_lists_the_nearest_keys():
    space = supernet.get_space("ofa-mbv3-w1.0")  # narrower than the tables' w1.2
    spec = space.to_spec({**space.smallest(), "r": 224})
    with pytest.raises(MissingEntryError) as info:
        lm.load_hardware("note10").predict(spec)
    err = info.value
    assert "no entry for 'Conv-input:224x224x3-output:112x112x16'" in str(err)
    assert err.nearest[0] == "Conv-input:224x224x3-output:112x112x24"
    assert "nearest keys:" in str(err)


def test_specs_without_blocks_or_other_batches_are_errors():
    b = lm.SpecBuilder((3, 224, 224))
    b.conv("c", 8, src=None)
    with pytest.raises(UnsupportedSpecError, match="has no blocks"):
        lm.load_hardware("note10").predict(b.build())
    space = supernet.get_space("ofa-mbv3-w1.2")
    with pytest.raises(UnsupportedSpecError, match="batch 8 is not tabulated; allowed: 1"):
        lm.load_hardware("note10").predict(space.to_spec(space.smallest(), batch=8))


def test_inline_tables_calibration_and_fit(tmp_path):
    space = supernet.get_space("ofa-mbv3-w1.2")
    spec = space.to_spec({**space.smallest(), "r": 160})
    profile = {
        "kind": "lut",
        "key_format": "ofa-mbv3",
        "tables": {160: {k: 1.0 for k in smallest_keys(160)}},
        "calibration": {"scale": 2.0, "overhead_ms": 0.5, "per_block_ms": 0.1},
    }
    hw = lm.from_profile(profile, str(tmp_path / "x.yaml"))
    n = len(smallest_keys(160))
    assert hw.predict(spec)["latency_ms"] == pytest.approx(2.0 * n + 0.5 + 0.1 * n)
    fit = hw.fit([spec], {"latency_ms": [3.0 * n]})
    assert fit.after["latency_ms_mape"] < 1e-4


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"r160": "x.yaml"}, "table keys must be input resolutions"),
        ({160: "missing.yaml"}, "cannot read table"),
        ({160: {"k": -1}}, "expected a latency in ms >= 0"),
        ({160: {"k": {"std": 1}}}, "entry has no field 'mean'"),
        ({160: {}}, "the table is empty"),
    ],
)
def test_table_errors(tables, message, tmp_path):
    with pytest.raises(lm.ProfileError, match=message):
        lm.from_profile({"kind": "lut", "tables": tables}, str(tmp_path / "p.yaml"))
