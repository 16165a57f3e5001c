"""Loading profiles: names, paths, every shipped profile, and errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models import ProfileError, UnknownHardwareError

SHIPPED = ("a100-sxm", "h100-sxm", "local-cpu", "note10", "stm32f746", "stm32h743")


def test_shipped_profiles_load_with_their_metrics():
    assert set(SHIPPED) <= set(lm.list_hardware())
    for name in lm.list_hardware():
        hw = lm.load_hardware(name)
        assert hw.name == name and hw.kind in lm.KINDS
        assert {"latency_ms", "macs", "params"} <= set(hw.metrics)
        assert hw.summary()["name"] == name
    assert "peak_sram_kb" in lm.load_hardware("stm32f746").metrics
    assert lm.load_hardware("h100-sxm").options()["precision"][0] == "fp16"


def test_every_kind_costs_a_spec_consistently():
    space = supernet.get_space("ofa-mbv3-w1.2")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(5)]
    specs = [space.to_spec({**a, "r": 192}) for a in archs]
    for name in ("a100-sxm", "note10", "stm32h743"):
        hw = lm.load_hardware(name)
        many = hw.predict_many(specs)
        assert many == [hw.predict(s) for s in specs]
        assert [c["macs"] for c in many] == [s.macs for s in specs]
        assert [c["params"] for c in many] == [s.params for s in specs]
        assert set(many[0]) == set(hw.metrics)
    assert lm.load_hardware("a100-sxm").predict_many([]) == []


def test_unknown_name_lists_the_profiles():
    with pytest.raises(UnknownHardwareError, match="unknown hardware 'tpu-v9'; available: a100"):
        lm.load_hardware("tpu-v9")
    with pytest.raises(UnknownHardwareError, match="or the path of a YAML profile"):
        lm.load_hardware("/no/such/profile.yaml")


def test_a_profile_by_path(tmp_path):
    path = tmp_path / "my-gpu.yaml"
    path.write_text(lm.hardware_path("a100-sxm").read_text().replace("name: a100-sxm\n", ""))
    hw = lm.load_hardware(str(path))
    assert hw.name == "my-gpu" and hw.kind == "gpu"


def test_a_loaded_profile_is_kept_until_one_of_its_files_changes(tmp_path):
    profile = tmp_path / "phone.yaml"
    shipped = lm.hardware_path("note10")
    tables = {}
    for line in shipped.read_text().splitlines():  # copy the tables a LUT profile names
        if line.strip().endswith(".yaml") and ":" in line:
            name = line.split(":", 1)[1].strip()
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text((shipped.parent / name).read_text())
            tables[name] = tmp_path / name
    profile.write_text(shipped.read_text())
    first = lm.load_hardware(str(profile))
    assert tables and {p.resolve() for p in tables.values()} <= set(first.files)
    assert lm.load_hardware(str(profile)) is first  # nothing changed: the same model
    table = next(iter(tables.values()))
    table.write_text(table.read_text() + "\n")  # a table file changes: read again
    second = lm.load_hardware(str(profile))
    assert second is not first and lm.load_hardware(str(profile)) is second
    profile.write_text(profile.read_text().replace("name: note10", "name: my-phone"))
    assert lm.load_hardware(str(profile)).name == "my-phone"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: gpu\npeak_tflops: [1, 2\n", "not valid YAML at line 3"),
        ("- just\n- a list\n", "expected a mapping, got list"),
        ("name: x\n", "field 'kind': missing"),
        ("kind: fpga\n", "field 'kind': value 'fpga' is not allowed; allowed: gpu, learned, lut"),
        ("kind: mcu\nclock_mhz: 10\n", "field 'sram_kb': missing"),
    ],
)
def test_corrupt_profiles_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message) as info:
        lm.load_hardware(str(path))
    assert str(path) in str(info.value)


def test_predicting_needs_only_numpy_and_pyyaml():
    import subprocess
    import sys

    code = (
        "import sys, latency_models as lm\n"
        "spec = lm.zoo_spec('mcunet-in0')\n"
        "models = [lm.load_hardware(n) for n in lm.list_hardware()]\n"
        "[m.predict(spec) for m in models if m.kind in ('mcu', 'gpu')]\n"
        "for heavy in ('torch', 'scipy', 'sklearn'):\n"
        "    assert heavy not in sys.modules, heavy + ' was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
