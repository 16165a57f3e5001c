"""spec_from_onnx / spec_from_torchscript / spec_from_file: a network file read as a
NetworkSpec gives the same layers as latency_models.trace of the torch module it came from."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import latency_models as lm
import supernet
from latency_models import SpecBuilder, TraceError
from latency_models.onnx_import import (
    NETWORK_FILE_SUFFIXES,
    spec_from_file,
    spec_from_onnx,
    spec_from_torchscript,
)
from latency_models.torch.measure import spec_to_module


def _key(layer: lm.LayerSpec) -> tuple:
    return (
        layer.op,
        layer.in_shape,
        layer.out_shape,
        layer.kernel,
        layer.stride,
        layer.groups,
        layer.act,
        layer.bn,
        layer.bias,
    )


def _graph(spec: lm.NetworkSpec) -> list[tuple]:
    """The layers with their inputs as positions, so that layer names do not matter."""
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    return [(*_key(x), tuple(index[s] for s in x.inputs)) for x in spec.layers]


def _assert_same(spec: lm.NetworkSpec, ref: lm.NetworkSpec) -> None:
    assert _graph(spec) == _graph(ref)
    assert (spec.input_shape, spec.macs, spec.params) == (ref.input_shape, ref.macs, ref.params)


def _folded(ref: lm.NetworkSpec) -> list[tuple]:
    """The layers as an inference export writes them: each BatchNorm folded into its
    convolution's bias."""
    return [(*k[:7], False, k[7] or k[8], k[9]) for k in _graph(ref)]


def _export(module: nn.Module, shape: tuple[int, ...], bn: Path, folded: Path | None) -> None:
    """As nas/export.py exports: torch's dynamo exporter with a dynamic batch dimension.
    Writes `bn` unoptimised (BatchNorm kept), then `folded` optimised as torch.onnx.export
    does by default and nas/export.py does (BatchNorm folded into the convolutions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            (torch.zeros(1, *shape),),
            dynamo=True,
            verbose=False,
            optimize=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        program.save(str(bn))
        if folded is not None:
            program.optimize()  # what optimize=True runs
            program.save(str(folded))


def _randomize(module: nn.Module) -> None:
    """Trained-like BatchNorm statistics and biases: no folded bias is all zeros."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1, generator=gen)
                m.running_var.uniform_(0.5, 2, generator=gen)
                m.weight.uniform_(0.5, 2, generator=gen)
                m.bias.uniform_(-1, 1, generator=gen)
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.uniform_(-1, 1, generator=gen)


# ----- subnets of the search spaces -------------------------------------------------------------

SPACES = {"mnist-mbv3": None, "mcu-mbv2": 96, "ofa-mbv3-w1.0": 128}


@pytest.fixture(scope="module", params=list(SPACES))
def subnet(request, tmp_path_factory):
    """(static module, input shape (C, H, W), its traced spec, folder with its ONNX exports:
    bn.onnx with BatchNorm nodes, model.onnx with BatchNorm folded)."""
    space = supernet.get_space(request.param)
    arch = space.sample(np.random.default_rng(1))
    if SPACES[request.param]:
        arch["r"] = SPACES[request.param]
    static = supernet.build(space).extract(arch).eval()
    _randomize(static)
    shape = (space.config.in_channels, arch["r"], arch["r"])
    folder = tmp_path_factory.mktemp(request.param)
    _export(static, shape, folder / "bn.onnx", folder / "model.onnx")
    ref = lm.trace(static, shape)
    if request.param.startswith("ofa"):  # squeeze-and-excitation and h_swish are covered
        assert any(x.op == "mul" for x in ref) and any(x.act == "h_swish" for x in ref)
    return static, shape, ref, folder


def test_subnet_exported_with_batchnorm_matches_trace(subnet):
    _, _, ref, folder = subnet
    spec = spec_from_onnx(folder / "bn.onnx")
    _assert_same(spec, ref)
    assert spec.batch == 1 and spec.name == "bn"


def test_subnet_exported_as_nas_export_does_matches_trace_with_batchnorm_folded(subnet):
    _, _, ref, folder = subnet
    spec = spec_from_onnx(folder / "model.onnx", batch=16)
    assert _graph(spec) == _folded(ref)
    assert spec.macs == ref.macs and spec.batch == 16
    bn_channels = sum(x.out_shape[0] for x in ref.layers if x.bn)
    assert spec.params == ref.params - bn_channels  # a bias (C) where BatchNorm had 2C


def test_subnet_as_torchscript_matches_trace(subnet):
    static, shape, ref, folder = subnet
    path = folder / "model.torchscript.pt"
    torch.jit.script(static).save(str(path))
    _assert_same(spec_from_torchscript(path, shape), ref)
    spec = spec_from_file(path, input_shape=(4, *shape))
    _assert_same(spec, ref)
    assert spec.batch == 4


# ----- reference networks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mcunet-in0", "mbv2-w0.35"])
def test_zoo_network_round_trips_through_onnx(name, tmp_path):
    zoo = lm.zoo_spec(name)
    module = spec_to_module(zoo).eval()
    ref = lm.trace(module, zoo.input_shape)
    assert [_key(x) for x in ref.layers] == [_key(x) for x in zoo.layers]
    path = tmp_path / f"{name}.onnx"
    _export(module, zoo.input_shape, path, None)
    _assert_same(spec_from_file(path), ref)


# ----- activations and ops, one by one ----------------------------------------------------------


class Mixed(nn.Module):
    """The ops and activations the spec knows, written the way torch users write them."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.ReLU6())
        self.c = nn.Sequential(nn.Conv2d(8, 8, 1), nn.GELU())
        self.d = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Tanh())
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(3, 1, 1)
        self.up = nn.Upsample(scale_factor=2)
        self.e = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b(self.a(x))
        x = x + self.c(x)
        x = self.avg(self.pool(self.d(x)))
        x = torch.relu(self.e(self.up(x)))
        x = torch.sigmoid(x) * x.mean((2, 3), keepdim=True)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_each_op_and_activation_matches_trace(tmp_path):
    module = Mixed().eval()
    _randomize(module)
    ref = lm.trace(module, (3, 32, 32))
    acts = {x.act for x in ref.layers}
    assert {"swish", "relu6", "gelu", "tanh", "relu", "sigmoid"} <= acts
    ops = {x.op for x in ref.layers}
    assert {"maxpool", "avgpool", "resize", "add", "mul", "global_avgpool", "linear"} <= ops
    _export(module, (3, 32, 32), tmp_path / "bn.onnx", tmp_path / "folded.onnx")
    _assert_same(spec_from_onnx(tmp_path / "bn.onnx"), ref)
    assert _graph(spec_from_onnx(tmp_path / "folded.onnx")) == _folded(ref)


def _tensor(name: str, *shape: int) -> TensorProto:
    values = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _save(nodes, initializers, path: Path, shape=("N", 3, 8, 8), out=(10,), opset=13) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def test_decomposed_activations_clip_and_matmul_add(tmp_path):
    """x * Sigmoid(x) and x * HardSigmoid(x) (older exporters' swish and h_swish), Clip as
    ReLU6 with bounds as inputs, ReduceMean with axes as an attribute, MatMul + Add."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("Mul", ["c1", "s1"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], strides=[2, 2]),
        helper.make_node("HardSigmoid", ["c2"], ["s2"], alpha=1 / 6),
        helper.make_node("Mul", ["s2", "c2"], ["a2"]),
        helper.make_node("Conv", ["a2", "w3"], ["c3"], group=8),
        helper.make_node("Clip", ["c3", "zero", "six"], ["r3"]),
        helper.make_node("Add", ["r3", "a2"], ["sum"]),
        helper.make_node("Sigmoid", ["sum"], ["s4"]),  # swish after an add: its own layer
        helper.make_node("Mul", ["sum", "s4"], ["a4"]),
        helper.make_node("LeakyRelu", ["a4"], ["l4"], alpha=0.1),
        helper.make_node("ReduceMean", ["l4"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "fc_w"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["y"]),
    ]
    inits = [
        _tensor("w1", 8, 3, 3, 3),
        _tensor("w2", 8, 8, 1, 1),
        _tensor("b2", 8),
        _tensor("w3", 8, 1, 1, 1),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6, np.float32), "six"),
        _tensor("fc_w", 8, 10),
        _tensor("fc_b", 10),
    ]
    path = _save(nodes, inits, tmp_path / "decomposed.onnx")
    spec = spec_from_onnx(path, name="net")
    b = SpecBuilder((3, 8, 8), name="net")
    b.conv("w1", 8, kernel=3, bn=False, act="swish", src=None)
    a2 = b.conv("w2", 8, stride=2, bias=True, bn=False, act="h_swish")
    r3 = b.conv("w3", 8, groups=8, bn=False, act="relu6")
    b.add("sum", r3, a2)
    b.act("a4", "swish")
    b.act("l4", "lrelu")
    b.global_avgpool("m")
    b.linear("mm", 10, bias=True)
    ref = b.build()
    _assert_same(spec, ref)
    assert spec.name == "net"


# ----- batch and input shape --------------------------------------------------------------------


def _conv_model(path: Path, shape) -> Path:
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])]
    return _save(nodes, [_tensor("w", 4, 3, 1, 1)], path, shape=shape)


def test_batch_from_file_argument_or_one(tmp_path):
    assert spec_from_onnx(_conv_model(tmp_path / "dyn.onnx", ("N", 3, 8, 8))).batch == 1
    assert spec_from_onnx(tmp_path / "dyn.onnx", batch=32).batch == 32
    static = _conv_model(tmp_path / "static.onnx", (8, 3, 8, 8))
    assert spec_from_onnx(static).batch == 8
    assert spec_from_file(static, batch=2).batch == 2
    assert spec_from_file(static, input_shape=(4, 3, 8, 8)).batch == 4


def test_dynamic_spatial_dims_need_input_shape(tmp_path):
    path = _conv_model(tmp_path / "hw.onnx", ("N", 3, "H", "W"))
    with pytest.raises(TraceError, match=r"hw\.onnx.*dimension H .*dynamic.*input_shape"):
        spec_from_onnx(path)
    spec = spec_from_onnx(path, input_shape=(3, 16, 12))
    assert spec.layers[0].out_shape == (4, 16, 12)
    with pytest.raises(TraceError, match=r"disagrees.*dimension C"):
        spec_from_onnx(path, input_shape=(1, 16, 12))


# ----- errors -----------------------------------------------------------------------------------


def test_unsupported_op_is_named_with_its_node(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["c"], ["s"], name="attention_softmax", axis=1),
        helper.make_node("Conv", ["s", "w2"], ["y"], kernel_shape=[1, 1]),
    ]
    path = _save(nodes, [_tensor("w", 4, 3, 1, 1), _tensor("w2", 4, 4, 1, 1)], tmp_path / "s.onnx")
    with pytest.raises(TraceError, match=r"s\.onnx: unsupported op: Softmax \(node 'attention_"):
        spec_from_onnx(path)


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lstm = nn.LSTM(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.conv(x).mean((2, 3)).unsqueeze(0))[0]  # a sequence of length 1


def test_exported_lstm_is_named(tmp_path):
    path = tmp_path / "lstm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(WithLSTM().eval(), (torch.zeros(1, 3, 8, 8),), path, dynamo=False)
    with pytest.raises(TraceError, match=r"lstm\.onnx: unsupported op: LSTM \(node '"):
        spec_from_file(path)


def test_missing_file(tmp_path):
    for call in (spec_from_onnx, spec_from_file):
        with pytest.raises(TraceError, match=r"nope\.onnx: no such file"):
            call(tmp_path / "nope.onnx")
    with pytest.raises(TraceError, match=r"nope\.pt: no such file"):
        spec_from_torchscript(tmp_path / "nope.pt", (3, 8, 8))


def test_file_that_is_not_onnx(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(TraceError, match=r"notes\.onnx is not (a readable|an) ONNX model"):
        spec_from_onnx(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(TraceError, match=r"empty\.onnx is not an ONNX model"):
        spec_from_file(empty)


def test_file_that_is_not_torchscript(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(TraceError, match=r"weights\.pt is not a readable TorchScript file"):
        spec_from_file(path, input_shape=(3, 8, 8))
    with pytest.raises(TraceError, match=r"weights\.pt: .*no input shape"):
        spec_from_file(path)


def test_unknown_suffix_names_the_supported_ones(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"x")
    with pytest.raises(TraceError, match=r"model\.h5.*supported suffixes: \.onnx .*\.pt"):
        spec_from_file(path)
    assert ".onnx" in NETWORK_FILE_SUFFIXES and "model.torchscript.pt".endswith(
        NETWORK_FILE_SUFFIXES
    )


def test_module_imports_without_onnx_or_torch():
    code = (
        "import sys; import latency_models.onnx_import; "
        "assert 'onnx' not in sys.modules and 'torch' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
