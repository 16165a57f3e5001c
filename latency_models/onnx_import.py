"""Read a network file (ONNX, or TorchScript through torch's ONNX exporter) as a NetworkSpec.

    spec = spec_from_onnx("model.onnx")                        # batch: the file's, else 1
    spec = spec_from_torchscript("model.pt", (3, 224, 224))    # TorchScript records no shape
    spec = spec_from_file(path, input_shape=None, batch=None)  # picks by suffix

ONNX's shape inference gives every tensor its shape (a dynamic batch dimension is read as 1,
or as `batch`). Nodes map to the same layers that `latency_models.trace` makes of the torch
module the file came from: a BatchNormalization or an activation that directly follows a
convolution (or Gemm/MatMul) and is its only reader is folded into it; the forms exporters
emit for activations ONNX lacks (x * Sigmoid(x), x * HardSigmoid(x)) become one activation;
Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout and a quantized graph's QuantizeLinear and
DequantizeLinear are aliases (same shape, another element type); nodes that read only
constants (initializers, Constant, shapes) are weights or shape arithmetic, not layers.
Anything else raises TraceError naming the node's op type and name.

An ONNX file exported with BatchNorm already folded into its convolutions (torch's dynamo
exporter with its default optimisation does this) has no BatchNorm to find: its convolutions
read bn=False, with a bias where the folded bias is non-zero.

The `onnx` package is imported inside the functions, `torch` only for TorchScript, so the
cost models import without either.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latency_models.errors import TraceError
from latency_models.graph import INPUT, GraphBuilder, per_sample_shape
from latency_models.ops import Shape
from latency_models.spec import NetworkSpec

ONNX_SUFFIXES: tuple[str, ...] = (".onnx",)
TORCHSCRIPT_SUFFIXES: tuple[str, ...] = (".pt", ".ts", ".torchscript")
# every suffix spec_from_file reads (a tuple, so that str.endswith can take it)
NETWORK_FILE_SUFFIXES: tuple[str, ...] = ONNX_SUFFIXES + TORCHSCRIPT_SUFFIXES

_OUTPUT = -1  # the pseudo-reader of a graph output (like torch.fx's output node)
_ACTIVATIONS = {
    "Relu": "relu",
    "HardSwish": "h_swish",
    "HardSigmoid": "h_sigmoid",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "LeakyRelu": "lrelu",
    "Gelu": "gelu",
    "Swish": "swish",
}
# x * gate(x), as exporters write the activations ONNX (before opset 14 or 24) lacks
_GATED = {"Sigmoid": "swish", "HardSigmoid": "h_swish"}
# a quantized (QDQ) graph's QuantizeLinear/DequantizeLinear pairs keep the tensor's shape:
# the layers are the same, only the element type differs
_ALIASES = {
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
    "QuantizeLinear",
    "DequantizeLinear",
}
_SHAPE_OPS = {"Shape", "Size"}  # read an activation's shape, not its values
_MAX_EVALUATED = 1 << 16  # constants larger than this are weights: never evaluated
_SUBGRAPH_TYPES = (5, 10)  # onnx.AttributeProto.GRAPH, GRAPHS
_MAX_FOLDS = 4  # rounds of shape inference, each after folding the constants it revealed


# ----- the public functions -------------------------------------------------------------------


def spec_from_onnx(
    path: str | Path,
    batch: int | None = None,
    name: str = "",
    *,
    input_shape: Sequence[int] | None = None,
) -> NetworkSpec:
    """The NetworkSpec of the ONNX model in `path`.

    The graph must have one input of shape (N, C, H, W). The spec's batch is `batch`, else
    the B of a 4-value `input_shape`, else the file's static N, else 1 (a dynamic N).
    `input_shape` ((C, H, W) or (B, C, H, W)) fills dynamic C, H or W dimensions and must
    agree with static ones. Raises TraceError naming the file and the reason (missing,
    not ONNX, an unsupported node: its op type and name).
    """
    path = Path(path)
    _check_file(path)
    model = _load_onnx(path)
    return _spec_from_model(model, str(path), path.parent, batch, name or path.stem, input_shape)


def spec_from_torchscript(
    path: str | Path, input_shape: Sequence[int], name: str = ""
) -> NetworkSpec:
    """The NetworkSpec of the TorchScript module in `path` on inputs of `input_shape`:
    (C, H, W), or (B, C, H, W) to record batch B.

    torch.jit.load reads it; torch's TorchScript-based ONNX exporter (`dynamo=False`: the
    dynamo exporter refuses ScriptModules) converts it, keeping BatchNorm nodes (no constant
    folding); spec_from_onnx reads the result.
    """
    path = Path(path)
    batch, chw = _split_input_shape(input_shape, str(path))
    _check_file(path)
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # torch raises RuntimeError, ValueError, pickle errors, ...
        raise TraceError(
            f"{path} is not a readable TorchScript file ({_reason(err)}); a state_dict or a "
            "pickled module is not TorchScript: save one with torch.jit.script(m).save(path)"
        ) from None
    module.eval()
    source = f"{path} (TorchScript, converted to ONNX)"
    with tempfile.TemporaryDirectory(prefix="spec-torchscript-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporter's deprecation notice
                torch.onnx.export(
                    module,
                    (torch.zeros(1, *chw),),
                    str(onnx_path),
                    dynamo=False,
                    do_constant_folding=False,  # would fold BatchNorm into the convolutions
                    input_names=["input"],
                )
        except Exception as err:
            raise TraceError(
                f"torch cannot convert the TorchScript module in {path} to ONNX on inputs of "
                f"shape {(1, *chw)}: {_reason(err)}"
            ) from None
        model = _load_onnx(onnx_path)
        return _spec_from_model(model, source, onnx_path.parent, batch, name or path.stem, chw)


def spec_from_file(
    path: str | Path,
    input_shape: Sequence[int] | None = None,
    batch: int | None = None,
    name: str = "",
) -> NetworkSpec:
    """The NetworkSpec of a network file, read by its suffix: .onnx (spec_from_onnx), or
    .pt / .ts / .torchscript (spec_from_torchscript, which needs `input_shape`).
    `batch`, when given, overrides the batch of the file or of `input_shape`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return spec_from_onnx(path, batch=batch, name=name, input_shape=input_shape)
    if suffix in TORCHSCRIPT_SUFFIXES:
        if input_shape is None:
            raise TraceError(
                f"{path}: a TorchScript file records no input shape; give input_shape as "
                "(C, H, W) or (B, C, H, W)"
            )
        file_batch, chw = _split_input_shape(input_shape, str(path))
        return spec_from_torchscript(path, (batch or file_batch, *chw), name=name)
    raise TraceError(
        f"{path}: cannot read a network from a file named {path.name!r}; supported suffixes: "
        f"{', '.join(ONNX_SUFFIXES)} (ONNX), {', '.join(TORCHSCRIPT_SUFFIXES)} (TorchScript)"
    )


# ----- files --------------------------------------------------------------------------------


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _check_file(path: Path) -> None:
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if not path.is_file():
        raise TraceError(f"{path}: not a file")


def _load_onnx(path: Path) -> Any:
    import onnx

    try:
        # external weights stay on disk: only their shapes are needed
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise TraceError(f"{path} is not a readable ONNX model ({_reason(err)})") from None
    if model.ir_version < 1 or not model.graph.node:
        raise TraceError(f"{path} is not an ONNX model (it holds no graph nodes)")
    return model


def _split_input_shape(input_shape: Sequence[int], source: str) -> tuple[int, Shape]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise TraceError(
            f"{source}: input_shape must be (C, H, W) or (B, C, H, W) of positive sizes, "
            f"got {input_shape!r}"
        )
    if len(shape) == 3:
        return 1, shape  # type: ignore[return-value]
    return shape[0], shape[1:]  # type: ignore[return-value]


# ----- the graph ------------------------------------------------------------------------------


def _strip_activation_qdq(graph: Any, initializers: set[str]) -> None:
    """Remove the QuantizeLinear -> DequantizeLinear pairs a quantized (QDQ) file puts on its
    activations, so that its layers read as the float file's do (an activation after its
    convolution, x * HardSigmoid(x) as one h_swish). A weight's DequantizeLinear of an
    int8 initializer stays: it is evaluated as a constant."""
    producer = {out: node for node in graph.node for out in node.output}
    renamed: dict[str, str] = {}  # a DequantizeLinear's output -> the float tensor quantized
    dropped = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] in initializers:
            continue
        quantize = producer.get(node.input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear":
            continue
        renamed[node.output[0]] = quantize.input[0]
        dropped.append(node)
    if not renamed:
        return
    for node in graph.node:
        for k, tensor in enumerate(node.input):
            if tensor in renamed:
                node.input[k] = renamed[tensor]
    outputs = {vi.name for vi in graph.output}
    for node in dropped:
        graph.node.remove(node)
    readers = {t for node in graph.node for t in node.input} | outputs
    for node in list(graph.node):  # QuantizeLinear nodes nobody reads any more
        if node.op_type == "QuantizeLinear" and node.output[0] not in readers:
            graph.node.remove(node)
    for vi in graph.output:  # an output that was a DequantizeLinear's: its float tensor
        if vi.name in renamed:
            vi.name = renamed[vi.name]


def _spec_from_model(
    model: Any,
    source: str,
    base_dir: Path,
    batch: int | None,
    name: str,
    input_shape: Sequence[int] | None,
) -> NetworkSpec:
    import onnx

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializers]
    if len(inputs) != 1:
        raise TraceError(
            f"{source}: a NetworkSpec reads one input; the graph has {len(inputs)}: "
            f"{[vi.name for vi in inputs]}"
        )
    given_batch, given_chw = (
        (None, None) if input_shape is None else _split_input_shape(input_shape, source)
    )
    file_batch, chw = _fix_input(inputs[0], given_chw, source)
    _strip_activation_qdq(graph, initializers)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    for _ in range(_MAX_FOLDS):
        del graph.value_info[:]  # recomputed with the concrete input shape
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as err:
            raise TraceError(f"{source}: ONNX shape inference failed ({_reason(err)})") from None
        reader = _Reader(inferred.graph, source, chw, base_dir, opset)
        if not _fold_constants(graph, reader):
            break
    reader.run()
    if not reader.builder.layers:
        raise TraceError(f"{source}: the graph has no layers to cost")
    spec_batch = batch or given_batch or file_batch or 1
    return reader.builder.spec(spec_batch, name, f"{source}: the graph")


def _fix_input(value_info: Any, given: Shape | None, source: str) -> tuple[int | None, Shape]:
    """Make the input's dims concrete in place (for shape inference); return the file's
    static batch (None when dynamic) and (C, H, W)."""
    tensor_type = value_info.type.tensor_type
    dims = list(tensor_type.shape.dim) if tensor_type.HasField("shape") else []
    if len(dims) != 4:
        raise TraceError(
            f"{source}: the input {value_info.name!r} must have shape (N, C, H, W); it has "
            f"{len(dims)} dimensions"
        )
    static = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    file_batch = static[0]
    chw: list[int] = []
    for i, (axis, value) in enumerate(zip("CHW", static[1:], strict=True)):
        if value is None and given is None:
            raise TraceError(
                f"{source}: dimension {axis} of the input {value_info.name!r} is dynamic "
                f"({dims[i + 1].dim_param or '?'}); give input_shape as (C, H, W)"
            )
        if value is not None and given is not None and given[i] != value:
            raise TraceError(
                f"{source}: input_shape {tuple(given)} disagrees with the input "
                f"{value_info.name!r} of shape {tuple(static)} (dimension {axis})"
            )
        chw.append(value if value is not None else given[i])  # type: ignore[index]
    for dim, value in zip(dims, [file_batch or 1, *chw], strict=True):
        dim.dim_value = value
    return file_batch, tuple(chw)  # type: ignore[return-value]


def _fold_constants(graph: Any, reader: _Reader) -> bool:
    """Replace the computed constants that layers read (axes, sizes, a zero bias) by Constant
    nodes, so that shape inference, run again, sees their values. Whether any was replaced."""
    from onnx import helper, numpy_helper

    changed = False
    for node in reader.nodes:
        if not reader.reads_data(node):
            continue
        for tensor in node.input:
            j = reader.producer.get(tensor)
            if j is None or tensor in reader.data or reader.stored(tensor):
                continue
            producer = graph.node[j]
            if producer.op_type == "Constant" or len(producer.output) != 1:
                continue
            value = reader.const_value(tensor)
            if value is None:
                continue
            array = numpy_helper.from_array(np.asarray(value), tensor)
            constant = helper.make_node("Constant", [], [tensor], name=producer.name, value=array)
            graph.node[j].CopyFrom(constant)
            changed = True
    return changed


class _Reader:
    """Walks the (topologically ordered) nodes, as latency_models.torch.tracing walks fx;
    the layers (names, folding, the spec) are a GraphBuilder's."""

    def __init__(self, graph: Any, source: str, chw: Shape, base_dir: Path, opset: int) -> None:
        from onnx import numpy_helper

        self.to_array = numpy_helper.to_array
        self.graph, self.source, self.base_dir = graph, source, base_dir
        self.opset = opset
        self.const_cache: dict[str, Any | None] = {}
        self.nodes = list(graph.node)
        self.dims: dict[str, tuple[int | None, ...]] = {}
        for vi in (*graph.input, *graph.value_info, *graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.dims[vi.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
                )
        self.tensors = {t.name: t for t in graph.initializer}
        for t in graph.initializer:
            self.dims.setdefault(t.name, tuple(t.dims))
        self.input = next(vi.name for vi in graph.input if vi.name not in self.tensors)
        self.data = {self.input}  # the tensors computed from the input: activations
        for node in self.nodes:
            if self.reads_data(node):
                self.data.update(node.output)
        self.value: dict[str, str] = {}  # activation tensor -> the layer holding its value
        self.readers: dict[str, set[int]] = {}
        self.producer: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for t in node.input:
                self.readers.setdefault(t, set()).add(i)
            for t in node.output:
                self.producer[t] = i
        for vi in graph.output:
            self.readers.setdefault(vi.name, set()).add(_OUTPUT)
        self.builder = GraphBuilder(chw)
        self.gates: dict[int, int] = {}  # gate node -> the Mul that applies it to its input
        self.gated: dict[int, tuple[str, str, int]] = {}  # Mul -> (act, x, gate node)
        self.find_gated()

    # ----- helpers ---------------------------------------------------------------------------

    def describe(self, node: Any) -> str:
        return f"{node.op_type} (node {node.name!r})" if node.name else node.op_type

    def unsupported(self, node: Any, detail: str = "") -> TraceError:
        return TraceError(
            f"{self.source}: unsupported op: {self.describe(node)}{': ' + detail if detail else ''}"
        )

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def const_value(self, tensor: str) -> Any | None:
        """The value of a constant tensor: an initializer, or the output of nodes that read
        only constants and the shapes of activations (evaluated once, by onnx's reference
        evaluator); None when it cannot be known."""
        if tensor not in self.const_cache:
            self.const_cache[tensor] = self.evaluate(tensor)
        return self.const_cache[tensor]

    def evaluate(self, tensor: str) -> Any | None:
        if tensor in self.tensors:
            try:
                return self.to_array(self.tensors[tensor], base_dir=str(self.base_dir))
            except Exception:  # external data that is not there
                return None
        i = self.producer.get(tensor)
        if i is None or tensor in self.data:
            return None
        node = self.nodes[i]
        if node.op_type in _SHAPE_OPS:
            dims = self.dims.get(node.input[0])
            if dims is None or None in dims:
                return None
            if node.op_type == "Size":
                return np.array(math.prod(dims), dtype=np.int64)  # type: ignore[arg-type]
            start, end = self.attr(node, "start", 0), self.attr(node, "end", None)
            return np.array(dims[start:end], dtype=np.int64)
        if node.op_type == "CastLike" and node.input[1] in self.data:
            return self.const_value(node.input[0])  # the dtype of the data: float
        if any(a.type in _SUBGRAPH_TYPES for a in node.attribute):  # If, Loop, Scan
            return None
        feeds = {}
        for t in node.input:
            if t:
                value = self.const_value(t)
                if value is None or np.asarray(value).size > _MAX_EVALUATED:
                    return None
                feeds[t] = np.asarray(value)
        try:
            from onnx.reference import ReferenceEvaluator

            results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception:  # an op the evaluator lacks, or a bad graph
            return None
        return dict(zip(node.output, results, strict=False)).get(tensor)

    def shape(self, tensor: str, node: Any) -> Shape:
        """A tensor's per-sample shape as (C, H, W); (features,) reads as (features, 1, 1)."""
        dims = self.dims.get(tensor)
        if dims is None or None in dims[1:]:
            raise TraceError(
                f"{self.source}: no shape inferred for tensor {tensor!r} ({self.describe(node)})"
            )
        shape = per_sample_shape(dims[1:])  # type: ignore[arg-type]
        if shape is not None:
            return shape
        raise TraceError(
            f"{self.source}: {self.describe(node)}: tensors of shape {dims} are not supported "
            "(a NetworkSpec holds (N, C, H, W) and (N, features) tensors)"
        )

    def layer_name(self, node: Any, index: int, weight: str | None = None) -> str:
        if weight and weight.endswith(".weight"):
            return weight.removesuffix(".weight")  # torch's module path, as trace() names it
        return node.name or f"{node.op_type.lower()}_{index}"

    def add_layer(
        self, node: Any, index: int, op: str, srcs: Sequence[str], x: str, **kw: Any
    ) -> dict[str, Any]:
        name = self.layer_name(node, index, kw.pop("weight", None))
        in_shape = kw.pop("in_shape", None) or self.shape(x, node)
        out_shape = kw.pop("out_shape", None) or self.shape(node.output[0], node)
        layer = self.builder.add(name, op, in_shape, out_shape, srcs, **kw)
        self.value[node.output[0]] = layer["name"]
        return layer

    def find_gated(self) -> None:
        """Mul(x, Sigmoid(x)) and Mul(x, HardSigmoid(x)), the gate read by the Mul alone."""
        for i, node in enumerate(self.nodes):
            if node.op_type != "Mul" or len(node.input) != 2:
                continue
            for x, g in (tuple(node.input), tuple(reversed(node.input))):
                j = self.producer.get(g)
                if j is None or x == g:
                    continue
                gate = self.nodes[j]
                if (
                    gate.op_type in _GATED
                    and gate.input[0] == x
                    and x in self.data
                    and self.readers[g] == {i}
                ):
                    self.gates[j] = i
                    self.gated[i] = (_GATED[gate.op_type], x, j)
                    break

    # ----- the walk --------------------------------------------------------------------------

    def run(self) -> None:
        self.value[self.input] = INPUT
        for i, node in enumerate(self.nodes):
            self.visit(i, node)

    def visit(self, i: int, node: Any) -> None:
        op = node.op_type
        if i in self.gates:
            return  # applied by its Mul
        if i in self.gated:
            act, x, j = self.gated[i]
            self.activation(node, i, act, x, {i, j})
            return
        if not self.reads_data(node):
            return  # weights or shape arithmetic: not a layer
        if node.domain not in ("", "ai.onnx"):
            raise self.unsupported(node, f"custom domain {node.domain!r}")
        handler = getattr(self, f"op_{op}", None)
        if handler is not None:
            handler(i, node)
        elif op in _ACTIVATIONS:
            self.activation(node, i, _ACTIVATIONS[op], node.input[0], {i})
        elif op in _ALIASES:
            self.value[node.output[0]] = self.reads(node.input[0], node)
        else:
            raise self.unsupported(node)

    def reads_data(self, node: Any) -> bool:
        """Whether a node computes on activations (else it is weights or shape arithmetic)."""
        if node.op_type in _SHAPE_OPS:
            return False
        if node.op_type == "CastLike":  # reads only the dtype of its second input
            return node.input[0] in self.data
        return any(t in self.data for t in node.input)

    def reads(self, tensor: str, node: Any) -> str:
        if tensor not in self.value:
            what = "a constant" if tensor not in self.data else "an output no layer stands for"
            raise self.unsupported(node, f"its input {tensor!r} is {what}")
        return self.value[tensor]

    def weight(self, tensor: str, node: Any) -> tuple[int | None, ...]:
        if tensor in self.data:
            raise self.unsupported(node, f"its weight {tensor!r} is not a constant")
        dims = self.dims.get(tensor)
        if dims is None:
            raise TraceError(
                f"{self.source}: no shape inferred for weight {tensor!r} ({self.describe(node)})"
            )
        return dims

    def fold(self, node: Any, x: str, readers: set[int], what: str, value: Any = True) -> bool:
        """Fold `node`, which reads `x`, into the layer holding x (GraphBuilder.fold), when
        `readers` (the op's nodes) are all of x's readers; whether it was folded."""
        if self.readers.get(x) != readers:
            return False
        name = self.builder.fold(self.value.get(x, ""), what, value)
        if name is None:
            return False
        self.value[node.output[0]] = name
        return True

    def activation(self, node: Any, i: int, act: str, x: str, readers: set[int]) -> None:
        if not self.fold(node, x, readers, "act", act):
            self.add_layer(node, i, "act", [self.reads(x, node)], x, act=act)

    # ----- nodes (op_<OpType>) ---------------------------------------------------------------

    def op_Conv(self, i: int, node: Any) -> None:
        x, w = node.input[0], node.input[1]
        src = self.reads(x, node)
        wdims = self.weight(w, node)
        if len(wdims) != 4:
            raise self.unsupported(node, f"only 2-D convolutions (weight shape {wdims})")
        k = tuple(self.attr(node, "kernel_shape", wdims[2:]))
        s = tuple(self.attr(node, "strides", (1, 1)))
        d = tuple(self.attr(node, "dilations", (1, 1)))
        if k[0] != k[1] or s[0] != s[1] or d != (1, 1):
            raise self.unsupported(
                node,
                f"only square kernels and strides without dilation (got kernel {k}, "
                f"stride {s}, dilation {d})",
            )
        bias = self.has_bias(node, 2)
        self.add_layer(
            node,
            i,
            "conv",
            [src],
            x,
            weight=w,
            kernel=int(k[0]),
            stride=int(s[0]),
            groups=int(self.attr(node, "group", 1)),
            bias=bias,
        )

    def stored(self, tensor: str) -> bool:
        """An initializer, or an Identity of one (exporters share equal initializers so)."""
        while tensor in self.producer and self.nodes[self.producer[tensor]].op_type == "Identity":
            tensor = self.nodes[self.producer[tensor]].input[0]
        return tensor in self.tensors

    def has_bias(self, node: Any, position: int) -> bool:
        """A bias input; one computed in the graph as zeros (exporters write a missing bias
        so) is none."""
        if len(node.input) <= position or not node.input[position]:
            return False
        tensor = node.input[position]
        if self.stored(tensor):
            return True
        value = self.const_value(tensor)
        return value is None or bool(np.any(value))

    def op_BatchNormalization(self, i: int, node: Any) -> None:
        if not self.fold(node, node.input[0], {i}, "bn"):
            raise self.unsupported(
                node,
                "it does not directly follow a convolution (only conv -> BatchNorm is folded)",
            )

    def op_Clip(self, i: int, node: Any) -> None:
        bounds = []
        for position, attr in ((1, "min"), (2, "max")):
            value = self.attr(node, attr)  # before opset 11
            if len(node.input) > position and node.input[position]:
                value = self.const_value(node.input[position])
                if value is None:
                    raise self.unsupported(node, f"its {attr} must be a constant")
            bounds.append(None if value is None else float(np.asarray(value).reshape(-1)[0]))
        lo, hi = bounds
        if lo == 0 and hi == 6:
            act = "relu6"
        elif lo == 0 and (hi is None or math.isinf(hi)):
            act = "relu"
        else:
            raise self.unsupported(node, f"Clip({lo}, {hi}) is neither ReLU nor ReLU6")
        self.activation(node, i, act, node.input[0], {i})

    def op_Gemm(self, i: int, node: Any) -> None:
        if self.attr(node, "transA", 0):
            raise self.unsupported(node, "transA=1")
        wdims = self.weight(node.input[1], node)
        if len(wdims) != 2:
            raise self.unsupported(node, f"weight of shape {wdims}")
        bias = self.has_bias(node, 2)
        self.linear(i, node, node.input[1], bias)

    def op_MatMul(self, i: int, node: Any) -> None:
        wdims = self.weight(node.input[1], node)
        if len(wdims) != 2 or len(self.dims.get(node.input[0], ())) != 2:
            raise self.unsupported(
                node, "only (N, features) x (features, out) products (a linear layer)"
            )
        self.linear(i, node, node.input[1], False)

    def linear(self, i: int, node: Any, weight: str, bias: bool) -> None:
        x = node.input[0]
        src = self.reads(x, node)
        in_shape = self.shape(x, node)
        produced = self.builder.produced(src)
        if produced != in_shape or in_shape[1:] != (1, 1):
            raise self.unsupported(
                node,
                f"a linear layer on a flattened {produced} feature map; pool to (C, 1, 1) "
                "before the linear layer",
            )
        self.add_layer(node, i, "linear", [src], x, weight=weight, bias=bias, in_shape=in_shape)

    def op_Add(self, i: int, node: Any) -> None:
        a, b = node.input[0], node.input[1]
        if a in self.data and b in self.data:
            self.binary(i, node, "add", a, b)
            return
        x, c = (a, b) if a in self.data else (b, a)
        producer = self.nodes[self.producer[x]] if self.value[x] != INPUT else None
        matmul = producer is not None and producer.op_type == "MatMul"
        # MatMul + Add(bias): a linear layer with a bias
        if matmul and self.fold(node, x, {i}, "bias"):
            return
        raise self.unsupported(node, f"with a constant operand {c!r}")

    def op_Mul(self, i: int, node: Any) -> None:
        a, b = node.input[0], node.input[1]
        if a not in self.data or b not in self.data:
            raise self.unsupported(node, "with a constant operand")
        if self.shape(a, node)[1:] == (1, 1) and self.shape(b, node)[1:] != (1, 1):
            a, b = b, a  # the gate goes second
        self.binary(i, node, "mul", a, b)

    def binary(self, i: int, node: Any, op: str, a: str, b: str) -> None:
        srcs = [self.reads(a, node), self.reads(b, node)]
        if INPUT in srcs:
            raise self.unsupported(
                node, "it reads the network input directly (a NetworkSpec add/mul reads two layers)"
            )
        self.add_layer(node, i, op, srcs, a)

    def op_GlobalAveragePool(self, i: int, node: Any) -> None:
        x = node.input[0]
        c, h, _ = self.shape(x, node)
        self.add_layer(
            node, i, "global_avgpool", [self.reads(x, node)], x, kernel=h, out_shape=(c, 1, 1)
        )

    def op_ReduceMean(self, i: int, node: Any) -> None:
        axes = self.attr(node, "axes")  # before opset 18
        if len(node.input) > 1 and node.input[1]:
            axes = self.const_value(node.input[1])
        if axes is not None:
            spatial = sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) == [2, 3]
        else:  # axes computed in the graph: judge by the shapes
            c = self.shape(node.input[0], node)[0]
            spatial = self.dims.get(node.output[0], ())[1:] in ((c, 1, 1), (c,))
        if not spatial or len(self.dims.get(node.input[0], ())) != 4:
            raise self.unsupported(node, f"a mean over axes {axes}, not over (H, W)")
        self.op_GlobalAveragePool(i, node)

    def pool(self, i: int, node: Any, op: str) -> None:
        x = node.input[0]
        k = tuple(self.attr(node, "kernel_shape", ()))
        s = tuple(self.attr(node, "strides", (1,) * len(k)))
        d = tuple(self.attr(node, "dilations", (1,) * len(k)))
        if len(k) != 2 or k[0] != k[1] or s[0] != s[1] or set(d) != {1}:
            raise self.unsupported(
                node, f"only square 2-D pooling (got kernel {k}, stride {s}, dilation {d})"
            )
        self.add_layer(node, i, op, [self.reads(x, node)], x, kernel=int(k[0]), stride=int(s[0]))

    def op_AveragePool(self, i: int, node: Any) -> None:
        self.pool(i, node, "avgpool")

    def op_MaxPool(self, i: int, node: Any) -> None:
        self.pool(i, node, "maxpool")

    def op_Resize(self, i: int, node: Any) -> None:
        x = node.input[0]
        self.add_layer(node, i, "resize", [self.reads(x, node)], x)

    op_Upsample = op_Resize
