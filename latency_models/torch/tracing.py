"""`trace(model, input_shape)`: any torch module made of the supported ops, as a NetworkSpec.

torch.fx records the graph and runs the model once on zeros for the shapes. Convolutions,
linear layers, pooling, activations, residual adds and squeeze-and-excitation gates become
LayerSpecs; a BatchNorm or an activation that directly follows a convolution (or linear layer)
and is its only reader is folded into it, as deployment folds them. Reshapes, flatten,
dropout and identities are aliases. Anything else raises TraceError naming the op.

This module imports torch; the cost models never do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from latency_models.errors import TraceError
from latency_models.graph import INPUT, GraphBuilder, per_sample_shape
from latency_models.spec import NetworkSpec

_ACT_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "h_swish",
    nn.Hardsigmoid: "h_sigmoid",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "swish",
    nn.Tanh: "tanh",
    nn.GELU: "gelu",
}
_ACT_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.relu6: "relu6",
    F.hardswish: "h_swish",
    F.hardsigmoid: "h_sigmoid",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "swish",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.gelu: "gelu",
}
_ACT_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
_ALIAS_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
_ALIAS_FUNCTIONS = {torch.flatten, F.dropout, torch.reshape}
_ALIAS_METHODS = {"view", "reshape", "flatten", "contiguous"}
_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}


def _op_name(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module {type(gm.get_submodule(str(node.target))).__name__} ({node.target})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)} ({node.name})"
    if node.op == "call_method":
        return f"method .{node.target}() ({node.name})"
    return f"{node.op} {node.target}"


class _Tracer:
    """Walks the fx graph's nodes; the layers (names, folding, the spec) are a GraphBuilder's."""

    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, int, int]) -> None:
        self.gm = gm
        self.builder = GraphBuilder(input_shape)
        self.alias: dict[fx.Node, str] = {}  # node -> name of the layer holding its value

    # ----- helpers ---------------------------------------------------------------------------

    @staticmethod
    def shape(node: fx.Node) -> tuple[int, int, int]:
        meta = node.meta.get("tensor_meta")
        if meta is None:
            raise TraceError(f"no shape recorded for {node.name}")
        shape = per_sample_shape(meta.shape[1:])
        if shape is not None:
            return shape
        raise TraceError(f"{node.name}: tensors of shape {tuple(meta.shape)} are not supported")

    def source(self, node: Any, user: fx.Node) -> str:
        if not isinstance(node, fx.Node):
            raise TraceError(
                f"unsupported: {_op_name(user, self.gm)} with a constant operand {node!r}"
            )
        return self.alias[node]

    def add_layer(self, node: fx.Node, op: str, srcs: Sequence[str], **kw: Any) -> None:
        name = str(node.target) if node.op == "call_module" else node.name
        in_shape = kw.pop("in_shape", None)
        if in_shape is None:
            first = node.args[0]
            assert isinstance(first, fx.Node)
            in_shape = self.shape(first)
        layer = self.builder.add(name, op, in_shape, self.shape(node), srcs, **kw)
        self.alias[node] = layer["name"]

    def fold(self, node: fx.Node, what: str, value: Any = True) -> bool:
        """Fold `node` into the layer holding its input (GraphBuilder.fold), when `node` is
        that input's only reader; whether it was folded."""
        src = node.args[0]
        if not isinstance(src, fx.Node) or len(src.users) != 1:
            return False
        name = self.builder.fold(self.alias.get(src, ""), what, value)
        if name is None:
            return False
        self.alias[node] = name
        return True

    def activation(self, node: fx.Node, act: str) -> None:
        if not self.fold(node, "act", act):
            self.add_layer(node, "act", [self.source(node.args[0], node)], act=act)

    # ----- nodes -----------------------------------------------------------------------------

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.alias[node] = INPUT
        elif node.op == "output":
            return
        elif node.op == "call_module":
            self.module(node, self.gm.get_submodule(str(node.target)))
        elif node.op == "call_function":
            self.function(node)
        elif node.op == "call_method":
            self.method(node)
        else:
            raise TraceError(f"unsupported op: {_op_name(node, self.gm)}")

    def module(self, node: fx.Node, m: nn.Module) -> None:
        first = node.args[0] if node.args else None
        if isinstance(m, nn.Conv2d):
            k, s = m.kernel_size, m.stride
            if k[0] != k[1] or s[0] != s[1] or m.dilation != (1, 1):
                raise TraceError(
                    f"unsupported op: {_op_name(node, self.gm)}: only square kernels and "
                    f"strides without dilation (got kernel {k}, stride {s}, dilation {m.dilation})"
                )
            self.add_layer(
                node,
                "conv",
                [self.source(first, node)],
                kernel=k[0],
                stride=s[0],
                groups=m.groups,
                bias=m.bias is not None,
            )
        elif isinstance(m, nn.BatchNorm2d):
            if not self.fold(node, "bn"):
                raise TraceError(
                    f"unsupported op: {_op_name(node, self.gm)} that does not directly follow "
                    "a convolution (only conv -> BatchNorm is folded)"
                )
        elif type(m) in _ACT_MODULES:
            self.activation(node, _ACT_MODULES[type(m)])
        elif isinstance(m, nn.Linear):
            src = self.source(first, node)
            in_shape = self.shape(first)  # type: ignore[arg-type]
            self.check_flat(node, src, in_shape)
            self.add_layer(node, "linear", [src], bias=m.bias is not None, in_shape=in_shape)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            if m.output_size not in (1, (1, 1)):
                raise TraceError(f"unsupported op: {_op_name(node, self.gm)} to {m.output_size}")
            self.global_pool(node)
        elif isinstance(m, nn.AvgPool2d | nn.MaxPool2d):
            k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
            if k[0] != k[1] or s[0] != s[1]:
                raise TraceError(f"unsupported op: {_op_name(node, self.gm)}: non-square pooling")
            op = "avgpool" if isinstance(m, nn.AvgPool2d) else "maxpool"
            self.add_layer(node, op, [self.source(first, node)], kernel=k[0], stride=s[0])
        elif isinstance(m, nn.Upsample):
            self.add_layer(node, "resize", [self.source(first, node)])
        elif isinstance(m, _ALIAS_MODULES):
            self.alias[node] = self.source(first, node)
        else:
            raise TraceError(f"unsupported op: {_op_name(node, self.gm)}")

    def function(self, node: fx.Node) -> None:
        fn = node.target
        first = node.args[0] if node.args else None
        if fn in _ADD or fn in _MUL:
            a, b = node.args[0], node.args[1]
            if not isinstance(a, fx.Node) or not isinstance(b, fx.Node):
                raise TraceError(
                    f"unsupported op: {_op_name(node, self.gm)} with a constant operand"
                )
            if fn in _MUL and self.shape(a)[1:] == (1, 1) and self.shape(b)[1:] != (1, 1):
                a, b = b, a  # the gate goes second
            self.binary(node, "add" if fn in _ADD else "mul", a, b)
        elif fn in _ACT_FUNCTIONS:
            self.activation(node, _ACT_FUNCTIONS[fn])  # type: ignore[index]
        elif fn in _ALIAS_FUNCTIONS:
            self.alias[node] = self.source(first, node)
        elif (fn is F.adaptive_avg_pool2d and node.args[1] in (1, (1, 1))) or (
            fn is torch.mean and _spatial_dims(node.args[1:], node.kwargs)
        ):
            self.global_pool(node)
        elif fn is F.interpolate:
            self.add_layer(node, "resize", [self.source(first, node)])
        else:
            raise TraceError(f"unsupported op: {_op_name(node, self.gm)}")

    def method(self, node: fx.Node) -> None:
        name = str(node.target)
        first = node.args[0]
        if name == "mean" and _spatial_dims(node.args[1:], node.kwargs):
            self.global_pool(node)
        elif name in _ALIAS_METHODS:
            self.alias[node] = self.source(first, node)
        elif name in _ACT_METHODS:
            self.activation(node, _ACT_METHODS[name])
        elif name in ("add", "mul") and isinstance(node.args[1], fx.Node):
            self.binary(node, name, first, node.args[1])  # type: ignore[arg-type]
        else:
            raise TraceError(f"unsupported op: {_op_name(node, self.gm)}")

    def binary(self, node: fx.Node, op: str, a: fx.Node, b: fx.Node) -> None:
        srcs = [self.source(a, node), self.source(b, node)]
        if INPUT in srcs:
            raise TraceError(
                f"unsupported op: {_op_name(node, self.gm)} reads the network input directly "
                "(a NetworkSpec add/mul reads two layers)"
            )
        self.add_layer(node, op, srcs, in_shape=self.shape(a))

    def global_pool(self, node: fx.Node) -> None:
        first = node.args[0]
        assert isinstance(first, fx.Node)
        c, h, _ = self.shape(first)
        self.add_layer(node, "global_avgpool", [self.source(first, node)], kernel=h)
        self.builder.by_name[self.alias[node]]["out_shape"] = (c, 1, 1)

    def check_flat(self, node: fx.Node, src: str, in_shape: tuple[int, int, int]) -> None:
        produced = self.builder.produced(src)
        if produced != in_shape:
            raise TraceError(
                f"unsupported op: {_op_name(node, self.gm)} on a flattened {produced} feature "
                "map; pool to (C, 1, 1) before the linear layer"
            )


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _spatial_dims(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    dims = args[0] if args else kwargs.get("dim")
    if isinstance(dims, int) or dims is None:
        return False
    return sorted(d % 4 for d in dims) == [2, 3]


def trace(model: nn.Module, input_shape: Sequence[int], name: str = "") -> NetworkSpec:
    """The NetworkSpec of `model` on inputs of `input_shape`: (C, H, W), or (B, C, H, W) to
    record batch B. Raises TraceError naming the first unsupported op."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        batch, chw = 1, shape
    elif len(shape) == 4:
        batch, chw = shape[0], shape[1:]
    else:
        raise TraceError(f"input_shape must be (C, H, W) or (B, C, H, W), got {shape}")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types for data-dependent control flow
        raise TraceError(f"torch.fx cannot trace {type(model).__name__}: {err}") from None
    was_training = model.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(1, *chw))
    finally:
        gm.train(was_training)
    tracer = _Tracer(gm, chw)  # type: ignore[arg-type]
    for node in gm.graph.nodes:
        tracer.visit(node)
    if not tracer.builder.layers:
        raise TraceError(f"{type(model).__name__} has no layers to cost")
    return tracer.builder.spec(batch, name or type(model).__name__, "the traced graph")
