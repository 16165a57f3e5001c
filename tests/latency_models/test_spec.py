"""LayerSpec / NetworkSpec: counts, graph checks and the JSON round-trip."""

from __future__ import annotations

import pytest

from latency_models import LayerSpec, NetworkSpec, SpecBuilder, SpecError, conv_output_size


def test_conv_counts():
    conv = LayerSpec("c", "conv", (16, 32, 32), (32, 16, 16), kernel=3, stride=2, bn=True)
    assert conv.macs == 32 * 16 * 16 * 16 * 9
    assert conv.params == 32 * 16 * 9 + 2 * 32
    assert conv.weight_count == 32 * 16 * 9


def test_depthwise_counts():
    dw = LayerSpec("dw", "conv", (64, 14, 14), (64, 14, 14), kernel=5, groups=64)
    assert dw.macs == 64 * 14 * 14 * 25
    assert dw.params == 64 * 25


def test_linear_and_elementwise_counts():
    fc = LayerSpec("fc", "linear", (1280, 1, 1), (1000, 1, 1), bias=True)
    assert fc.macs == 1_280_000 and fc.params == 1_281_000
    add = LayerSpec("a", "add", (8, 4, 4), (8, 4, 4), inputs=("x", "y"))
    assert add.macs == 0 and add.params == 0 and add.out_elements == 128


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"op": "conv3d"}, "unknown op 'conv3d'"),
        ({"act": "mish"}, "unknown activation 'mish'"),
        ({"groups": 3}, "not divisible by groups=3"),
        ({"in_shape": (0, 4, 4)}, "must be positive"),
        ({"in_shape": (4, 4)}, "must be \\(C, H, W\\)"),
    ],
)
def test_layer_errors(kwargs, message):
    base = {"name": "l", "op": "conv", "in_shape": (8, 4, 4), "out_shape": (8, 4, 4)}
    with pytest.raises(SpecError, match=message):
        LayerSpec(**{**base, **kwargs})


def test_output_size_same_padding():
    assert conv_output_size(7, 3, 2) == 4
    assert conv_output_size(224, 3, 2) == 112
    assert conv_output_size(14, 7, 1) == 14


def _small_net(batch: int = 1) -> NetworkSpec:
    b = SpecBuilder((3, 32, 32), name="toy", batch=batch)
    stem = b.conv("stem", 16, kernel=3, stride=2, act="relu", src=None)
    b.begin_block("blk")
    b.conv("expand", 32, act="relu6")
    dw = b.conv("dw", 32, kernel=3, groups=32, act="relu6")
    b.global_avgpool("se.pool")
    b.conv("se.reduce", 8, bias=True, bn=False, act="relu")
    gate = b.conv("se.expand", 32, bias=True, bn=False, act="h_sigmoid")
    b.mul("se.scale", dw, gate)
    project = b.conv("project", 16)
    b.add("add", project, stem)
    b.end_block("mbconv", (16, 16, 16), mid=32)
    b.global_avgpool("pool")
    b.linear("fc", 10)
    return b.build()


def test_builder_graph_and_totals():
    spec = _small_net(batch=8)
    assert spec.output_shape == (10, 1, 1)
    assert spec.batch == 8
    assert spec.macs == sum(layer.macs for layer in spec)
    assert spec.layers_of("blk")[0].name == "expand"
    assert spec.blocks[0].out_shape == (16, 16, 16)
    assert spec.with_batch(2).batch == 2 and spec.with_batch(2).macs == spec.macs


def test_json_round_trip():
    spec = _small_net()
    again = NetworkSpec.from_json(spec.to_json())
    assert again == spec


def test_graph_errors():
    conv = LayerSpec("a", "conv", (3, 8, 8), (4, 8, 8))
    with pytest.raises(SpecError, match="reads 'ghost'"):
        NetworkSpec((LayerSpec("b", "conv", (4, 8, 8), (4, 8, 8), inputs=("ghost",)),), (3, 8, 8))
    with pytest.raises(SpecError, match="duplicate layer name 'a'"):
        NetworkSpec((conv, conv), (3, 8, 8))
    with pytest.raises(SpecError, match="its input has shape"):
        NetworkSpec((conv, LayerSpec("b", "conv", (5, 8, 8), (4, 8, 8), inputs=("a",))), (3, 8, 8))
    with pytest.raises(SpecError, match="needs 2 input"):
        NetworkSpec((conv, LayerSpec("b", "add", (4, 8, 8), (4, 8, 8), inputs=("a",))), (3, 8, 8))
    with pytest.raises(SpecError, match="at least one layer"):
        NetworkSpec((), (3, 8, 8))
    with pytest.raises(SpecError, match="batch"):
        NetworkSpec((conv,), (3, 8, 8), batch=0)


def test_linear_needs_pooled_input():
    b = SpecBuilder((3, 8, 8))
    b.conv("c", 4, src=None)
    with pytest.raises(SpecError, match="needs a \\(C, 1, 1\\) input"):
        b.linear("fc", 10)
