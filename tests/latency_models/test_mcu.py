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
    # b cannot run in place: d still reads a, b's input. Per layer (bytes):
    # A and B: a 32+64, b 64+64, c 64+64 (it accumulates onto a: a not counted twice),
    # d in place 64+64
    assert cost["peak_sram_act_kb"] == pytest.approx(128 / 1024)
    assert cost["peak_sram_layerwise_kb"] == pytest.approx(128 / 1024)
    # C: c 64 + 64 + a held 64, d 64 + 64 + its own output 64; + the largest im2col
    # buffer (a: two int16 columns of 2*9 = 72 bytes) + a's int16 kernel copy (2*72)
    assert cost["peak_sram_kb"] == pytest.approx((192 + 72 + 144) / 1024)
    # flash: weights 72 + 36 + 16, and 12 bytes (int32 bias + 8-byte scale) per channel x 12
    assert cost["flash_kb"] == pytest.approx((124 + 12 * 12) / 1024)
    # cycles: a 1152*2 + 64*10, b 576*3 + 640, c 256*1 + 640, d 64*1 = 6272
    assert cost["latency_ms"] == pytest.approx(6.272)


def test_inplace_depthwise_by_hand():
    hw = toy()
    cost = hw.predict(chain_net())
    # b's input dies with it: A counts 64 + 64, B and C its input 64 only; a needs 32 + 64
    assert cost["peak_sram_act_kb"] == pytest.approx(128 / 1024)
    assert cost["peak_sram_layerwise_kb"] == pytest.approx(96 / 1024)
    # C: 96 + the largest scratch buffer, 72 bytes both for a's im2col (4*2*9) and for b's
    # padded int16 channel (2*(4+2)*(4+2)), + a's int16 kernel copy 2*72
    assert cost["peak_sram_kb"] == pytest.approx((96 + 72 + 144) / 1024)
    off = {"inplace_depthwise": False, "im2col_buffers": False, "kernel_buffers": False}
    no_inplace = toy(**off).predict(chain_net())
    assert no_inplace["peak_sram_kb"] == pytest.approx(128 / 1024)
    # A and B do not depend on the runtime's switches
    assert no_inplace["peak_sram_layerwise_kb"] == cost["peak_sram_layerwise_kb"]


def test_squeeze_excitation_by_hand():
    """An MBConv block with squeeze-and-excitation and a residual, as the spaces build it."""
    b = lm.SpecBuilder((4, 4, 4), name="se")
    x = b.conv("stem", 4, src=None)  # 1x1: names the block input, which the add reads
    b.conv("expand", 8)
    dw = b.conv("dw", 8, kernel=3, groups=8)
    b.global_avgpool("se.pool")
    b.conv("se.reduce", 2, bias=True, bn=False)
    gate = b.conv("se.expand", 8, bias=True, bn=False)
    b.mul("se.scale", dw, gate)
    project = b.conv("project", 4)
    b.add("add", project, x)
    spec = b.build()
    memory = toy().layer_memory(spec)
    names = [layer.name for layer in spec.layers]
    per_layer = {k: dict(zip(names, v.tolist(), strict=True)) for k, v in memory.items()}
    # the residual x (64) is held from the depthwise to the add; the depthwise output (128)
    # from the SE pool to the multiply
    assert per_layer["act"] == {
        "stem": 64 + 64,
        "expand": 64 + 128,
        "dw": 128 + 128 + 64,
        "se.pool": 128 + 8 + 64,
        "se.reduce": 8 + 2 + 128 + 64,
        "se.expand": 2 + 8 + 128 + 64,
        "se.scale": 128 + 8 + 64,  # in place
        "project": 128 + 64,  # accumulates onto x
        "add": 64 + 64,
    }
    assert per_layer["layerwise"] == {**per_layer["act"], "dw": 128 + 64}
    assert per_layer["arena"] == {
        **per_layer["layerwise"],
        "se.scale": 128 + 8 + 128 + 64,  # the multiply writes its own output
        "project": 128 + 64 + 64,
        "add": 64 + 64 + 64,
    }
    cost = toy().predict(spec)
    assert cost["peak_sram_act_kb"] == pytest.approx(320 / 1024)
    assert cost["peak_sram_layerwise_kb"] == pytest.approx(202 / 1024)
    # + the largest scratch buffer, the depthwise's padded int16 channel 2*6*6 = 72 (1x1
    # convs copy no kernel)
    assert cost["peak_sram_kb"] == pytest.approx((328 + 72) / 1024)


def test_runtime_constants_batch_and_metrics(residual):
    hw = toy(runtime_sram_kb=10, runtime_flash_kb=100, sram_activation_factor=2.0)
    cost = hw.predict(residual)
    # the factor scales the tensors (192 bytes), not the scratch buffers (72 + 144)
    assert cost["peak_sram_kb"] == pytest.approx((2 * 192 + 216) / 1024 + 10)
    assert cost["flash_kb"] == pytest.approx(268 / 1024 + 100)
    double = hw.predict(residual.with_batch(2))
    assert double["latency_ms"] == pytest.approx(2 * cost["latency_ms"])
    # two samples: twice the tensors, the same scratch buffers
    assert double["peak_sram_kb"] == pytest.approx((4 * 192 + 216) / 1024 + 10)
    assert double["peak_sram_layerwise_kb"] == 2 * cost["peak_sram_layerwise_kb"]
    assert set(cost) == set(hw.metrics)
    assert set(hw.summary()["peak_sram_definitions"]) == {
        "peak_sram_kb",
        "peak_sram_layerwise_kb",
        "peak_sram_act_kb",
    }


def test_the_peaks_are_the_maxima_of_layer_memory():
    hw = lm.load_hardware("stm32h743")
    specs = [lm.zoo_spec(n) for n in ZOO]
    costs = hw.predict_many(specs)
    for spec, cost in zip(specs, costs, strict=True):
        assert cost == hw.predict(spec)
        memory = hw.layer_memory(spec)
        assert cost["peak_sram_act_kb"] == pytest.approx(memory["act"].max() / 1024)
        assert cost["peak_sram_layerwise_kb"] == pytest.approx(memory["layerwise"].max() / 1024)
        # the definitions' order, for networks of MBConv blocks: B <= A, B <= C's arena
        assert memory["layerwise"].max() <= min(memory["act"].max(), memory["arena"].max())
        arena = memory["arena"].max() * hw.sram_activation_factor
        buffers = memory["im2col"].max() + memory["kernel"].max()
        assert cost["peak_sram_kb"] == pytest.approx((arena + buffers) / 1024 + hw.runtime_sram_kb)


# Published peak-SRAM figures, each row with its source: MCUNetV2 (arXiv:2110.15352) Table 1
# and Fig. 1; the "Act" column of MCUNet's first model zoo (github.com/mit-han-lab/tinyml
# @e899b1b); the TinyEngine README's STM32H743 results (github.com/mit-han-lab/tinyengine).
# profiles/mcu/README.md has the table.
PUBLISHED_CSV = TINYENGINE.parent / "published-peak-sram.csv"
PUBLISHED = list(csv.DictReader(PUBLISHED_CSV.read_text().splitlines()))


@pytest.mark.parametrize(
    "row", PUBLISHED, ids=[f"{r['network']}:{r['block'] or r['metric']}" for r in PUBLISHED]
)
def test_published_peak_sram(row):
    """MCUNetV2's per-layer count of MobileNetV2-1.0 at 224 (1,372 kB) and per block (Fig. 1):
    definition B; the MCUNet model zoo's "Act" column: A (int4 rows at half a byte); the
    TinyEngine README's STM32H743 peak SRAM: C with no slack or runtime (TinyEngine's
    PEAK_MEM). Sources in the CSV's `source` column."""
    profile = dict(lm.load_hardware("stm32h743").profile)
    profile.update(sram_activation_factor=1.0, runtime_sram_kb=0.0)
    profile["quantization"] = {
        **profile["quantization"],
        "activation_bytes": float(row["activation_bytes"]),
    }
    hw = lm.from_profile(profile, "published.yaml")
    spec = lm.zoo_spec(row["network"])
    if row["block"]:
        memory = hw.layer_memory(spec)["layerwise"]
        assert row["metric"] == "peak_sram_layerwise_kb"
        value = max(
            m for layer, m in zip(spec.layers, memory, strict=True) if layer.block == row["block"]
        )
        value /= 1024
    else:
        value = hw.predict(spec)[row["metric"]]
    assert value == pytest.approx(float(row["published_kb"]), abs=float(row["tolerance_kb"]))


def test_mbv2_224_definitions():
    """MobileNetV2-1.0 at 224, int8: MCUNetV2 (Table 1) publishes 1,372 kB, the input and output
    of the first stride-2 block's 1x1 expansion (112*112*(16+96) bytes). MCUNet's own count
    (mcunet `count_peak_activation_size`, definition A; not published for this network) gives
    1,470 kB at that block's depthwise, whose output is a second buffer (112*112*96 +
    56*56*96). TinyEngine's plan (C): the same 1,372 kB arena + 25,992 bytes of padded
    depthwise channel (2*114*114) + 1,728 bytes of stem kernel copy."""
    hw = lm.load_hardware("stm32h743")
    cost = hw.predict(lm.zoo_spec("mbv2-w1.0-r224"))
    assert cost["peak_sram_layerwise_kb"] == 112 * 112 * (16 + 96) / 1024 == 1372
    assert cost["peak_sram_act_kb"] == (112 * 112 * 96 + 56 * 56 * 96) / 1024 == 1470
    expected = (1372 * 1024 * hw.sram_activation_factor + 25992 + 1728) / 1024
    assert cost["peak_sram_kb"] == pytest.approx(expected + hw.runtime_sram_kb)


def test_shipped_stm32h743_matches_tinyengine():
    """The stated errors of profiles/mcu/README.md: within 1% on SRAM and on flash for
    every network, latency MAPE under 3% (in-sample)."""
    hw = lm.load_hardware("stm32h743")
    rows = list(csv.DictReader(TINYENGINE.read_text().splitlines()))
    costs = hw.predict_many([lm.zoo_spec(r["network"]) for r in rows])
    for row, cost in zip(rows, costs, strict=True):
        assert cost["peak_sram_kb"] == pytest.approx(float(row["peak_sram_kb"]), rel=0.01)
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
    assert fit.profile["runtime_sram_kb"] == pytest.approx(12.0, rel=1e-3)
    assert fit.profile["sram_activation_factor"] == pytest.approx(1.1, rel=1e-3)
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
        ({"kernel_buffers": 1}, "field 'kernel_buffers': expected true or false"),
        ({"sram": 1}, "field 'sram': unknown field; allowed: .*clock_mhz"),
    ],
)
def test_profile_errors_name_the_field(changes, message):
    with pytest.raises(ProfileError, match=message):
        toy(**changes)
    missing = {k: v for k, v in PROFILE.items() if k != "sram_kb"}
    with pytest.raises(ProfileError, match="field 'sram_kb': missing"):
        lm.from_profile(missing, "toy.yaml")


def test_int8_is_the_only_precision(residual):
    """The model costs int8 networks: `precision: int8` is accepted (a search then measures
    quality after int8 quantization), anything else is refused with what is allowed."""
    model = toy()
    assert model.options()["precision"] == ("int8",)
    assert model.predict(residual, precision="int8") == model.predict(residual)
    with pytest.raises(
        lm.OptionError, match="'precision': value 'fp16' is not supported; allowed: int8"
    ):
        model.predict(residual, precision="fp16")


# ----- runtime: tflm ---------------------------------------------------------------------------

TFLM = {
    "runtime_flash_kb": 16,
    "runtime_flash_source": "a test",
    "eval_tensor_bytes": 24,
    "node_bytes": 64,
    "channel_bytes": 8,
    "opdata_bytes": {"weighted": 100, "other": 50},
    "tail_base_bytes": 1000,
    "planning_tensor_bytes": 60,
    "flatbuffer": {
        "tensor_bytes": 300,
        "op_bytes": 20,
        "base_bytes": 5000,
        "bias_bytes": 4,
        "channel_bytes": 24,
    },
}


def tflm_net(size: int) -> lm.NetworkSpec:
    """input (1, size, size) -> a: conv3x3 s2 1->4 h_swish -> b: depthwise3x3 relu ->
    c: conv1x1 -> d: add(c, a) -> p: global pool -> fc: linear 10."""
    b = lm.SpecBuilder((1, size, size), name="tflm")
    b.conv("a", 4, kernel=3, stride=2, act="h_swish", src=None)
    b.conv("b", 4, kernel=3, groups=4, act="relu")
    b.conv("c", 4)
    b.add("d", "c", "a")
    b.global_avgpool("p")
    b.linear("fc", 10)
    return b.build()


def test_tflm_arena_and_flatbuffer_by_hand():
    hw = toy(tflm=TFLM)
    assert hw.options()["runtime"] == ("tinyengine", "tflm")  # TinyEngine's plan by default
    cost = hw.predict(tflm_net(8), runtime="tflm")
    # 8x8, stride 2: TFLite's SAME pads 0 before and 1 after, PyTorch 1 and 1, so the
    # converter writes a PAD (1x10x10 = 100) and a VALID conv. Live bytes per op: the input
    # and its NHWC copy 64 + 64; PAD 64 + 100; a 100 + 64; its HARD_SWISH 64 + 64; b 64 + 64
    # (a is its input); c 64 + 64 + a held 64; d 64 + 64 + 64; p 64 + 4; fc 4 + 10
    head = 192
    # ops: 6 layers + PAD + HARD_SWISH + the input's reorder = 9; of them conv-like 4 (a,
    # b, c, fc) with 4 + 4 + 4 + 10 = 22 output channels; tensors: the input, 9 outputs, and
    # constants: weights and bias x 4, the paddings, MEAN's axes, the reorder's shape = 21
    tail = 24 * 21 + 64 * 9 + 8 * 22 + 100 * 4 + 50 * 5 + 1000
    # while planning TFLM borrows 60 B per tensor from the head: 1260 B, more than the head
    planning = 60 * 21
    assert cost["peak_sram_kb"] == pytest.approx((planning + tail) / 1024)
    memory = hw.tflm_memory(lm.arrays.SpecBatch.of([tflm_net(8)]))
    assert memory["allocated"][0] == head + tail  # what TFLM's recording allocator totals
    assert memory["arena"][0] == planning + tail
    # weights 36 + 36 + 16 + 40, 4 + 24 bytes per channel, 300 per tensor, 20 per op, 5000
    flatbuffer = 128 + 28 * 22 + 300 * 21 + 20 * 9 + 5000
    assert cost["flash_kb"] == pytest.approx(flatbuffer / 1024 + 16)
    # the other metrics are the runtime's own: unchanged
    default = hw.predict(tflm_net(8))
    assert default["peak_sram_kb"] != cost["peak_sram_kb"]
    for metric in ("latency_ms", "macs", "peak_sram_act_kb", "peak_sram_layerwise_kb"):
        assert cost[metric] == default[metric]
    # 7x7, stride 2: both pad 1 on each side, so no PAD op (and no padded copy)
    graph = hw.tflm_graph(lm.arrays.SpecBatch.of([tflm_net(7)]))
    assert graph["ops"][0] == 8 and graph["tensors"][0] == 19


def test_tflm_needs_the_profiles_constants(residual):
    with pytest.raises(
        lm.OptionError, match="'runtime': value 'tflm' is not supported; allowed: tinyengine"
    ):
        toy().predict(residual, runtime="tflm")
    with pytest.raises(ProfileError, match=r"tflm\.runtime_flash_source"):
        toy(tflm={**TFLM, "runtime_flash_source": " "})
    with pytest.raises(ProfileError, match=r"tflm\.opdata_bytes\.other"):
        toy(tflm={**TFLM, "opdata_bytes": {"weighted": 100}})


def test_shipped_mcu_profiles_offer_tflm(residual):
    for name in ("stm32f746", "stm32h743"):
        hw = lm.load_hardware(name)
        assert hw.options()["runtime"] == ("tinyengine", "tflm")
        tflm = hw.predict(residual, runtime="tflm")
        assert tflm["peak_sram_kb"] > hw.predict(residual)["peak_sram_kb"]
