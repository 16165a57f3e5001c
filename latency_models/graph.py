"""The layers a network reader makes of a recorded graph, shared by the torch tracer
(`latency_models.torch.tracing`) and the ONNX reader (`latency_models.onnx_import`).

A reader walks its graph (a torch.fx trace, an ONNX file) in topological order and hands
each op to a `GraphBuilder`, with the shapes its graph recorded. The builder owns what both
readers must do alike, so that a torch module and its exported file read as the same layers:

- layer names are made unique (`name`, `name_1`, `name_2`, ...);
- an op that deployment folds into the layer producing its input is folded, not added:
  an activation or a BatchNorm after a convolution (an activation also after a linear
  layer), a bias added to a linear layer that has none. The reader checks that the op is
  that input's only reader; the builder checks the layer;
- the network input is the source `INPUT`, which the finished spec reads as `inputs=()`.

Unlike `SpecBuilder`, which computes each layer's shapes, this builder takes the shapes the
graph recorded, and its layers stay mutable dicts until `spec()` (folding changes them).
It imports neither torch nor onnx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from latency_models.errors import SpecError, TraceError
from latency_models.ops import Shape
from latency_models.spec import LayerSpec, NetworkSpec

INPUT = "<input>"  # the source name of the network input

# what may be folded into the layer that produced an op's input
FOLDS = ("act", "bn", "bias")


def per_sample_shape(dims: Sequence[int]) -> Shape | None:
    """A tensor's per-sample dims as (C, H, W): (features,) reads as (features, 1, 1);
    None for any other rank."""
    dims = tuple(int(d) for d in dims)
    if len(dims) == 1:
        return (dims[0], 1, 1)
    if len(dims) == 3:
        return dims  # type: ignore[return-value]
    return None


class GraphBuilder:
    """The layers of one network read from a recorded graph, as mutable dicts."""

    def __init__(self, input_shape: Shape) -> None:
        self.input_shape = input_shape
        self.layers: list[dict[str, Any]] = []
        self.by_name: dict[str, dict[str, Any]] = {}

    def unique(self, name: str) -> str:
        """`name`, or `name_1`, `name_2`, ... when a layer already has it."""
        base, i = name, 1
        while name in self.by_name:
            name, i = f"{base}_{i}", i + 1
        return name

    def add(
        self,
        name: str,
        op: str,
        in_shape: Shape,
        out_shape: Shape,
        inputs: Sequence[str],
        **fields: Any,
    ) -> dict[str, Any]:
        """Append a layer named `name` (made unique) reading the sources `inputs`; return it."""
        name = self.unique(name)
        layer = {
            "name": name,
            "op": op,
            "in_shape": in_shape,
            "out_shape": out_shape,
            "inputs": tuple(inputs),
            **fields,
        }
        self.layers.append(layer)
        self.by_name[name] = layer
        return layer

    def produced(self, source: str) -> Shape:
        """The shape the source `source` (a layer's name, or INPUT) produces."""
        return self.by_name[source]["out_shape"] if source != INPUT else self.input_shape

    def fold_target(self, source: str, what: str) -> dict[str, Any] | None:
        """The layer named `source` when `what` (one of FOLDS) may be folded into it: a
        convolution or linear layer without an activation yet; for a BatchNorm, a
        convolution without one yet; for a bias, a linear layer without one yet."""
        layer = self.by_name.get(source)
        if layer is None or layer["op"] not in ("conv", "linear") or layer.get("act"):
            return None
        if what == "bn" and (layer["op"] != "conv" or layer.get("bn")):
            return None
        if what == "bias" and (layer["op"] != "linear" or layer.get("bias")):
            return None
        return layer

    def fold(self, source: str, what: str, value: Any = True) -> str | None:
        """Fold `what` (FOLDS: "act" with the activation's name as `value`, "bn", "bias")
        into the layer named `source` when fold_target allows; the name of the layer now
        holding the op's result, or None when nothing was folded."""
        layer = self.fold_target(source, what)
        if layer is None:
            return None
        layer[what] = value
        return layer["name"]

    def spec(self, batch: int, name: str, what: str = "the graph") -> NetworkSpec:
        """The finished NetworkSpec; a TraceError saying `what` is not valid otherwise."""
        layers = []
        for d in self.layers:
            fields = {k: v for k, v in d.items() if k != "inputs"}
            inputs = tuple(s for s in d["inputs"] if s != INPUT)
            layers.append(LayerSpec(inputs=inputs, **fields))
        try:
            return NetworkSpec(tuple(layers), self.input_shape, batch, name)
        except SpecError as err:
            raise TraceError(f"{what} is not a valid NetworkSpec: {err}") from None
