"""GraphBuilder: the layer building shared by trace() and the ONNX reader."""

from __future__ import annotations

import subprocess
import sys

import pytest

from latency_models import SpecError, TraceError
from latency_models.graph import INPUT, GraphBuilder, per_sample_shape


def _conv(g: GraphBuilder, name: str = "conv", src: str = INPUT, **fields) -> dict:
    return g.add(name, "conv", (3, 8, 8), (4, 8, 8), [src], kernel=3, **fields)


def _linear(g: GraphBuilder, name: str = "fc", src: str = INPUT) -> dict:
    return g.add(name, "linear", (3, 1, 1), (10, 1, 1), [src])


def test_names_are_made_unique_in_order():
    g = GraphBuilder((3, 8, 8))
    names = [_conv(g, "c")["name"] for _ in range(3)]
    assert names == ["c", "c_1", "c_2"]
    assert g.unique("c") == "c_3" and g.unique("other") == "other"
    # a name that already looks like a suffixed one is not confused with it
    assert _conv(g, "c_1")["name"] == "c_1_1"
    assert list(g.by_name) == ["c", "c_1", "c_2", "c_1_1"]


def test_activation_folds_into_a_conv_or_linear_once():
    g = GraphBuilder((3, 8, 8))
    conv = _conv(g)
    assert g.fold("conv", "act", "relu") == "conv" and conv["act"] == "relu"
    assert g.fold("conv", "act", "relu6") is None  # a second activation is a layer of its own
    assert conv["act"] == "relu"
    fc = _linear(g)
    assert g.fold("fc", "act", "h_swish") == "fc" and fc["act"] == "h_swish"


def test_batchnorm_folds_into_a_conv_before_its_activation_only():
    g = GraphBuilder((3, 8, 8))
    conv = _conv(g)
    assert g.fold("conv", "bn") == "conv" and conv["bn"] is True
    assert g.fold("conv", "bn") is None  # one BatchNorm per convolution
    _conv(g, "after_act", act="relu")
    assert g.fold("after_act", "bn") is None  # conv -> act -> BN is not folded
    _linear(g)
    assert g.fold("fc", "bn") is None  # only convolutions take a BatchNorm


def test_bias_folds_into_a_linear_layer_without_one():
    g = GraphBuilder((3, 1, 1))
    fc = _linear(g)
    assert g.fold("fc", "bias") == "fc" and fc["bias"] is True
    assert g.fold("fc", "bias") is None
    _conv(g)
    assert g.fold("conv", "bias") is None  # a convolution's bias is its own input


def test_nothing_folds_into_other_layers_or_the_input():
    g = GraphBuilder((3, 8, 8))
    g.add("pool", "maxpool", (3, 8, 8), (3, 4, 4), [INPUT], kernel=2, stride=2)
    for what in ("act", "bn", "bias"):
        assert g.fold("pool", what) is None
        assert g.fold(INPUT, what) is None
        assert g.fold("no such layer", what) is None
    assert "act" not in g.by_name["pool"]


def test_spec_drops_the_input_source_and_keeps_folds():
    g = GraphBuilder((3, 8, 8))
    _conv(g)
    g.fold("conv", "bn")
    g.fold("conv", "act", "relu")
    g.add("pool", "global_avgpool", (4, 8, 8), (4, 1, 1), ["conv"], kernel=8)
    assert g.produced(INPUT) == (3, 8, 8) and g.produced("pool") == (4, 1, 1)
    spec = g.spec(batch=2, name="net")
    assert (spec.batch, spec.name, spec.input_shape) == (2, "net", (3, 8, 8))
    conv, pool = spec.layers
    assert conv.inputs == () and (conv.bn, conv.act) == (True, "relu")
    assert pool.inputs == ("conv",)
    # the builder's own layers are left as they were
    assert g.layers[0]["inputs"] == (INPUT,)


def test_an_invalid_graph_is_a_trace_error_naming_what_was_read():
    g = GraphBuilder((3, 8, 8))
    g.add("a", "add", (3, 8, 8), (3, 8, 8), ["missing", "other"])
    with pytest.raises(TraceError, match=r"^model\.onnx: the graph is not a valid NetworkSpec"):
        g.spec(1, "net", "model.onnx: the graph")
    with pytest.raises(SpecError, match="unknown op"):  # a bad layer stays a SpecError
        bad = GraphBuilder((3, 8, 8))
        bad.add("x", "no-such-op", (3, 8, 8), (3, 8, 8), [INPUT])
        bad.spec(1, "net")


def test_per_sample_shape():
    assert per_sample_shape([10]) == (10, 1, 1)
    assert per_sample_shape((3, 4, 5)) == (3, 4, 5)
    assert per_sample_shape((3, 4)) is None and per_sample_shape(()) is None


def test_module_imports_without_onnx_or_torch():
    code = (
        "import sys; import latency_models.graph; "
        "assert 'onnx' not in sys.modules and 'torch' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
