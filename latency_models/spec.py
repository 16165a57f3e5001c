"""A network described as a graph of layers with shapes: the only thing cost models see.

Shapes are per sample, as (channels, height, width); a linear layer's features are
(features, 1, 1). `NetworkSpec.batch` says how many samples one inference processes.
MACs and params are derived from the spec, never stored, so they cannot disagree with it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from latency_models.arrays import SpecArrays
from latency_models.errors import SpecError
from latency_models.ops import ACTIVATIONS, OPS, Shape


@dataclass(frozen=True)
class LayerSpec:
    name: str
    op: str
    in_shape: Shape
    out_shape: Shape
    inputs: tuple[str, ...] = ()  # producing layers; () reads the network input
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    bias: bool = False
    bn: bool = False  # a BatchNorm follows the op (folded into it at deployment)
    act: str | None = None  # activation applied after the op (and its BN)
    block: str | None = None  # name of the BlockSpec this layer belongs to

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(v) for v in self.out_shape))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.op not in OPS:
            raise SpecError(f"layer {self.name!r}: unknown op {self.op!r}; allowed: {sorted(OPS)}")
        if self.act is not None and self.act not in ACTIVATIONS:
            raise SpecError(
                f"layer {self.name!r}: unknown activation {self.act!r}; allowed: {ACTIVATIONS}"
            )
        if len(self.in_shape) != 3 or len(self.out_shape) != 3:
            raise SpecError(f"layer {self.name!r}: shapes must be (C, H, W)")
        if min(self.in_shape + self.out_shape) < 1:
            raise SpecError(f"layer {self.name!r}: shapes must be positive, got {self.in_shape}")
        if self.op == "conv" and (
            self.in_shape[0] % self.groups or self.out_shape[0] % self.groups
        ):
            raise SpecError(f"layer {self.name!r}: channels not divisible by groups={self.groups}")

    @property
    def macs(self) -> int:
        """Multiply-accumulates for one sample (convolutions and linear layers only)."""
        if self.op == "conv":
            c_out, h, w = self.out_shape
            return c_out * h * w * (self.in_shape[0] // self.groups) * self.kernel * self.kernel
        if self.op == "linear":
            return self.in_shape[0] * self.out_shape[0]
        return 0

    @property
    def weight_count(self) -> int:
        """Weights of the op itself, without bias or BatchNorm (a const: its values)."""
        if self.op == "conv":
            return self.out_shape[0] * (self.in_shape[0] // self.groups) * self.kernel**2
        if self.op == "linear":
            return self.in_shape[0] * self.out_shape[0]
        if self.op == "const":
            return self.out_elements
        return 0

    @property
    def params(self) -> int:
        """Trainable parameters, counted as torch counts them (BatchNorm weight and bias)."""
        if self.op == "const":
            return self.weight_count
        if self.op not in ("conv", "linear"):
            return 0
        c_out = self.out_shape[0]
        return self.weight_count + (c_out if self.bias else 0) + (2 * c_out if self.bn else 0)

    @property
    def out_elements(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shape"], d["out_shape"], d["inputs"] = (
            list(self.in_shape),
            list(self.out_shape),
            list(self.inputs),
        )
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerSpec:
        return cls(**{**d, "in_shape": tuple(d["in_shape"]), "out_shape": tuple(d["out_shape"])})


@dataclass(frozen=True)
class BlockSpec:
    """A group of layers that device look-up tables time as one unit (e.g. an MBConv block).

    `attrs` holds what a table key needs; for kind "mbconv": mid, kernel, stride, skip, se, act.
    """

    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(v) for v in self.out_shape))
        object.__setattr__(self, "attrs", dict(self.attrs))

    @cached_property
    def signature(self) -> tuple[Any, ...]:
        """(kind, in_shape, out_shape, sorted attrs): hashable, computed once per block
        (spaces reuse BlockSpec objects across the specs they build)."""
        return (self.kind, self.in_shape, self.out_shape, _freeze(self.attrs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlockSpec:
        return cls(d["name"], d["kind"], tuple(d["in_shape"]), tuple(d["out_shape"]), d["attrs"])


@dataclass(frozen=True)
class NetworkSpec:
    """Layers in execution order; every layer reads only the input or earlier layers."""

    layers: tuple[LayerSpec, ...]
    input_shape: Shape
    batch: int = 1
    name: str = ""
    blocks: tuple[BlockSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        if self.batch < 1:
            raise SpecError(f"batch must be >= 1, got {self.batch}")
        if not self.layers:
            raise SpecError("a NetworkSpec needs at least one layer")
        self._check_graph()

    def _check_graph(self) -> None:
        out_shapes: dict[str, Shape] = {}
        block_names = {b.name for b in self.blocks}
        for layer in self.layers:
            if layer.name in out_shapes:
                raise SpecError(f"duplicate layer name {layer.name!r}")
            if layer.block is not None and self.blocks and layer.block not in block_names:
                raise SpecError(f"layer {layer.name!r} names unknown block {layer.block!r}")
            sources = []
            for src in layer.inputs:
                if src not in out_shapes:
                    raise SpecError(
                        f"layer {layer.name!r} reads {src!r}, which is not an earlier layer"
                    )
                sources.append(out_shapes[src])
            if layer.op == "const":
                if layer.inputs or layer.in_shape != layer.out_shape:
                    raise SpecError(f"const layer {layer.name!r} reads nothing and keeps its shape")
                out_shapes[layer.name] = layer.out_shape
                continue
            if not sources:
                sources = [self.input_shape]
            expected = 2 if layer.op in ("add", "mul") else 1
            if len(sources) != expected:
                raise SpecError(f"layer {layer.name!r} ({layer.op}) needs {expected} input(s)")
            if sources[0] != layer.in_shape:
                raise SpecError(
                    f"layer {layer.name!r}: in_shape {layer.in_shape} but its input "
                    f"has shape {sources[0]}"
                )
            if layer.op == "add" and sources[1] != layer.in_shape:
                raise SpecError(f"layer {layer.name!r}: add of {sources[0]} and {sources[1]}")
            if layer.op == "mul" and sources[1] not in (layer.in_shape, (layer.in_shape[0], 1, 1)):
                raise SpecError(f"layer {layer.name!r}: mul of {sources[0]} and {sources[1]}")
            out_shapes[layer.name] = layer.out_shape

    def __iter__(self) -> Iterator[LayerSpec]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    @property
    def macs(self) -> int:
        """MACs for one sample (the usual "300M MACs" figure); multiply by batch for a batch."""
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def layers_of(self, block: str) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.block == block]

    @cached_property
    def arrays(self) -> SpecArrays:
        """The layers as numbers, for vectorised cost models; built once per spec and shared
        by every device that costs it (the spec is immutable, so the cache cannot go stale)."""
        return SpecArrays.of(self)

    def with_batch(self, batch: int) -> NetworkSpec:
        """The same network at another batch size. A shallow copy: the graph was checked when
        this spec was built, and the cached arrays do not depend on the batch."""
        if batch < 1:
            raise SpecError(f"batch must be >= 1, got {batch}")
        spec = copy.copy(self)
        object.__setattr__(spec, "batch", batch)
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
            "blocks": [block.to_dict() for block in self.blocks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetworkSpec:
        return cls(
            layers=tuple(LayerSpec.from_dict(x) for x in d["layers"]),
            input_shape=tuple(d["input_shape"]),
            batch=int(d.get("batch", 1)),
            name=d.get("name", ""),
            blocks=tuple(BlockSpec.from_dict(x) for x in d.get("blocks", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        return cls.from_dict(json.loads(text))


def _freeze(value: Any) -> Any:
    """A hashable copy: lists become tuples, mappings sorted tuples of pairs."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a convolution or pooling with 'same' padding (kernel // 2)."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


class SpecBuilder:
    """Appends layers to a graph, tracking the shape of each named output.

    Each method reads `src` (default: the last layer added) and returns the new layer's name.
    """

    def __init__(self, input_shape: Shape, name: str = "", batch: int = 1) -> None:
        self.input_shape: Shape = tuple(int(v) for v in input_shape)
        self.name, self.batch = name, batch
        self.layers: list[LayerSpec] = []
        self.blocks: list[BlockSpec] = []
        self._shapes: dict[str, Shape] = {}
        self.block: str | None = None  # block name stamped on layers added from now on

    @property
    def last(self) -> str | None:
        return self.layers[-1].name if self.layers else None

    def shape(self, src: str | None) -> Shape:
        return self.input_shape if src is None else self._shapes[src]

    def external(self, name: str, shape: Shape) -> str:
        """Name a tensor made outside this builder (a block's input, when blocks are built
        one at a time and cached) so that layers can read it."""
        self._shapes[name] = tuple(int(v) for v in shape)
        return name

    def _add(self, name: str, op: str, src: str | None, out_shape: Shape, **kw: Any) -> str:
        inputs = kw.pop("inputs", None)
        if inputs is None:
            inputs = () if src is None else (src,)
        layer = LayerSpec(
            name, op, self.shape(src), out_shape, inputs=inputs, block=self.block, **kw
        )
        self.layers.append(layer)
        self._shapes[name] = layer.out_shape
        return name

    def _src(self, src: str | None) -> str | None:
        return self.last if src == "" else src

    def conv(
        self,
        name: str,
        out_channels: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        bn: bool = True,
        act: str | None = None,
        src: str | None = "",
    ) -> str:
        src = self._src(src)
        _, h, w = self.shape(src)
        out = (
            out_channels,
            conv_output_size(h, kernel, stride),
            conv_output_size(w, kernel, stride),
        )
        return self._add(
            name,
            "conv",
            src,
            out,
            kernel=kernel,
            stride=stride,
            groups=groups,
            bias=bias,
            bn=bn,
            act=act,
        )

    def linear(self, name: str, out_features: int, bias: bool = True, src: str | None = "") -> str:
        src = self._src(src)
        c, h, w = self.shape(src)
        if (h, w) != (1, 1):
            raise SpecError(f"linear layer {name!r} needs a (C, 1, 1) input, got {(c, h, w)}")
        return self._add(name, "linear", src, (out_features, 1, 1), bias=bias)

    def global_avgpool(self, name: str, src: str | None = "") -> str:
        src = self._src(src)
        c, h, _ = self.shape(src)
        return self._add(name, "global_avgpool", src, (c, 1, 1), kernel=h)

    def pool(self, name: str, op: str, kernel: int, stride: int, src: str | None = "") -> str:
        src = self._src(src)
        c, h, w = self.shape(src)
        out = (c, conv_output_size(h, kernel, stride), conv_output_size(w, kernel, stride))
        return self._add(name, op, src, out, kernel=kernel, stride=stride)

    def const(self, name: str, shape: Shape) -> str:
        """A learned constant (a generator's input): reads nothing."""
        layer = LayerSpec(name, "const", shape, shape, block=self.block)
        self.layers.append(layer)
        self._shapes[name] = layer.out_shape
        return name

    def resize(self, name: str, size: int, src: str | None = "") -> str:
        src = self._src(src)
        c, _, _ = self.shape(src)
        return self._add(name, "resize", src, (c, size, size))

    def act(self, name: str, act: str, src: str | None = "") -> str:
        src = self._src(src)
        return self._add(name, "act", src, self.shape(src), act=act)

    def add(self, name: str, a: str | None, b: str | None) -> str:
        return self._add(name, "add", a, self.shape(a), inputs=_names(a, b))

    def mul(self, name: str, a: str | None, b: str | None) -> str:
        return self._add(name, "mul", a, self.shape(a), inputs=_names(a, b))

    def begin_block(self, name: str) -> None:
        self.block = name

    def end_block(self, kind: str, in_shape: Shape, **attrs: Any) -> None:
        assert self.block is not None, "end_block without begin_block"
        self.blocks.append(BlockSpec(self.block, kind, in_shape, self.shape(self.last), attrs))
        self.block = None

    def build(self) -> NetworkSpec:
        return NetworkSpec(
            tuple(self.layers), self.input_shape, self.batch, self.name, tuple(self.blocks)
        )


def _names(a: str | None, b: str | None) -> tuple[str, ...]:
    if a is None or b is None:
        raise SpecError("add/mul must read two named layers, not the network input")
    return (a, b)
