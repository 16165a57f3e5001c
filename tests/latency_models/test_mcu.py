"""The microcontroller model on hand-computed networks, the shipped STM32 profiles against
TinyEngine's published measurements, and the calibration."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import latency_models as lm
from latency_models import ProfileError
from latency_models.zoo import ZOO
from tests.latency_models.conftest import chain_net

PROFILE = {
    "name": "toy-mcu",
    "kind": "mcu",
    "clock_mhz": 1.0,  # 1,000 cycles per ms
    "sram_kb": 320,
    "flash_kb": 1024,
    "cycles_per_mac": {"conv": 2, "pointwise": 1, "depthwise": 3, "grouped": 3, "linear": 1},
    "cycles_per_element": {"output": 10, "pool": 1, "elementwise": 1},
    "layer_overhead_cycles": 0,
    "runtime_sram_kb": 0,
    "runtime_flash_kb": 0,
}
TINYENGINE = Path(lm.PROFILE_DIR) / "mcu" / "tinyengine-stm32h743.csv"


def toy(**changes) -> lm.CostModel:
    return lm.from_profile({**PROFILE, **changes}, "toy.yaml")


def test_residual_net_by_hand(residual):
    cost = toy().predict(residual)
    # MACs: a 4*4*4*(2*9) = 1152, b 4*4*4*9 = 576, c 4*4*4*4 = 256
    assert cost["macs"] == 1984
    # layer-wise: a 32+64, b 64+64, c 64+64 + a held for the add (64), d in place 64+64
    assert cost["peak_sram_layerwise_kb"] == pytest.approx(192 / 1024)
    # scheduled: b cannot run in place (d still reads a); c adds an im2col buffer of two
    # int16 columns of 4 channels (16 bytes): 64 + 64 + 64 + 16
    assert cost["peak_sram_kb"] == pytest.approx(208 / 1024)
    # flash: weights 72 + 36 + 16, and 12 bytes (int32 bias + 8-byte scale) per channel x 12
    assert cost["flash_kb"] == pytest.approx((124 + 12 * 12) / 1024)
    # cycles: a 1152*2 + 64*10, b 576*3 + 640, c 256*1 + 640, d 64*1 = 6272
    assert cost["latency_ms"] == pytest.approx(6.272)


def test_inplace_depthwise_by_hand():
    hw = toy()
    cost = hw.predict(chain_net())
    # b's input dies with it: max(64, 64) + one padded channel (4+2)*(4+2) = 100 bytes;
    # a needs 32 + 64 + im2col 2*2*(2*9) = 168
    assert cost["peak_sram_kb"] == pytest.approx(168 / 1024)
    assert cost["peak_sram_layerwise_kb"] == pytest.approx(128 / 1024)
    no_inplace = toy(inplace_depthwise=False, im2col_buffers=False).predict(chain_net())
    assert no_inplace["peak_sram_kb"] == pytest.approx(128 / 1024)


def test_runtime_constants_batch_and_metrics(residual):
    hw = toy(runtime_sram_kb=10, runtime_flash_kb=100, sram_activation_factor=2.0)
    cost = hw.predict(residual)
    assert cost["peak_sram_kb"] == pytest.approx(2 * 208 / 1024 + 10)
    assert cost["flash_kb"] == pytest.approx(268 / 1024 + 100)
    double = hw.predict(residual.with_batch(2))
    assert double["latency_ms"] == pytest.approx(2 * cost["latency_ms"])
    assert set(cost) == set(hw.metrics)


def test_shipped_stm32h743_matches_tinyengine():
    """The stated errors of profiles/mcu/README.md: within 3% on SRAM and 1% on flash for
    every network, latency MAPE under 3% (in-sample)."""
    hw = lm.load_hardware("stm32h743")
    rows = list(csv.DictReader(TINYENGINE.read_text().splitlines()))
    costs = hw.predict_many([lm.zoo_spec(r["network"]) for r in rows])
    for row, cost in zip(rows, costs, strict=True):
        assert cost["peak_sram_kb"] == pytest.approx(float(row["peak_sram_kb"]), rel=0.03)
        assert cost["flash_kb"] == pytest.approx(float(row["flash_kb"]), rel=0.01)
    errors = [
        c["latency_ms"] / float(r["latency_ms"]) - 1 for r, c in zip(rows, costs, strict=True)
    ]
    assert np.mean(np.abs(errors)) < 0.03


def test_f746_is_the_h743_at_its_clock():
    h7, f7 = lm.load_hardware("stm32h743"), lm.load_hardware("stm32f746")
    spec = lm.zoo_spec("mcunet-in0")
    assert f7.predict(spec)["latency_ms"] == pytest.approx(
        h7.predict(spec)["latency_ms"] * 480 / 216
    )
    # MCUNet's "10 fps on STM32F746" model must run within 100 ms, the "5 fps" one in 200 ms
    assert f7.predict(spec)["latency_ms"] < 100
    assert f7.predict(lm.zoo_spec("mcunet-in1"))["latency_ms"] < 200


def test_fit_recovers_runtime_and_is_repeatable():
    hw = toy(runtime_sram_kb=0, runtime_flash_kb=0)
    specs = [lm.zoo_spec(n) for n in ZOO]
    truth = toy(runtime_sram_kb=12.0, runtime_flash_kb=50.0, sram_activation_factor=1.1)
    costs = truth.predict_many(specs)
    measured = {
        k: np.array([c[k] for c in costs]) for k in ("latency_ms", "peak_sram_kb", "flash_kb")
    }
    fit = hw.fit(specs, measured)
    assert fit.after["flash_kb_mape"] < 1e-3 and fit.after["peak_sram_kb_mape"] < 1e-3
    assert fit.after["latency_ms_mape"] < 0.02 <= fit.before["peak_sram_kb_mape"]
    assert fit.profile["runtime_flash_kb"] == pytest.approx(50.0, rel=1e-3)
    again = lm.from_profile(fit.profile, "x").fit(specs, measured)
    assert again.profile["cycles_per_mac"] == fit.profile["cycles_per_mac"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clock_mhz": 0}, "field 'clock_mhz': must be > 0"),
        ({"clock_mhz": "fast"}, "field 'clock_mhz': expected a number"),
        ({"cycles_per_mac": {"conv": 1}}, "field 'cycles_per_mac.pointwise': missing"),
        ({"cycles_per_mac": {**PROFILE["cycles_per_mac"], "fft": 1}}, "unknown field"),
        ({"quantization": {"activation_bits": 8}}, "quantization.activation_bits': unknown"),
        ({"inplace_depthwise": "yes"}, "expected true or false"),
        ({"sram": 1}, "field 'sram': unknown field; allowed: .*clock_mhz"),
    ],
)
def test_profile_errors_name_the_field(changes, message):
    with pytest.raises(ProfileError, match=message):
        toy(**changes)
    missing = {k: v for k, v in PROFILE.items() if k != "sram_kb"}
    with pytest.raises(ProfileError, match="field 'sram_kb': missing"):
        lm.from_profile(missing, "toy.yaml")


def test_no_options(residual):
    with pytest.raises(lm.OptionError, match="option 'precision': not an option of mcu"):
        toy().predict(residual, precision="fp16")
