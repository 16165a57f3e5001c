"""A NetworkSpec as numbers: one int64 row per layer, for cost models vectorised over many specs.

`NetworkSpec.arrays` builds this once per spec (it is cached on the spec, so every device that
costs the spec shares it). `SpecBatch` concatenates the rows of many specs so that a cost model
computes all their layers with a few numpy operations and reduces them per spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from latency_models.keys import BlockSig, generic_key
from latency_models.ops import ACTIVATIONS, OPS

if TYPE_CHECKING:  # for annotations only: spec.py imports this module, never the reverse
    from latency_models.spec import NetworkSpec

OP_CODES: dict[str, int] = {op: i for i, op in enumerate(OPS)}
ACT_CODES: dict[str | None, int] = {None: 0, **{a: i + 1 for i, a in enumerate(ACTIVATIONS)}}

# Cost classes: the groups of layers that run at one speed on a device (profiles key on these).
# conv: dense, kernel > 1x1 (the stem); pointwise: dense 1x1 (expand, project, head, SE);
# depthwise: groups == channels; grouped: other grouped convolutions; linear: fully connected;
# pool: average / max / global-average; elementwise: residual add, SE multiply, activation, resize.
LAYER_CLASSES = ("conv", "pointwise", "depthwise", "grouped", "linear", "pool", "elementwise")
CLASS_CODES = {name: i for i, name in enumerate(LAYER_CLASSES)}

# Rows of SpecArrays.columns: one value per layer each.
COLUMNS = (
    "op",
    "cls",
    "cin",
    "hin",
    "win",
    "cout",
    "hout",
    "wout",
    "kernel",
    "stride",
    "groups",
    "act",
    "bn",
    "bias",
    "macs",  # per sample
    "weights",  # weights of the op, without bias or BatchNorm
    "in_elems",  # elements of the first input, per sample
    "inputs_elems",  # elements of all inputs (an add reads two)
    "out_elems",
    "held_elems",  # elements of other tensors alive while the layer runs (residual inputs)
    "in_dies",  # 1 when no later layer reads the first input (it may be overwritten in place)
)
COL = {name: i for i, name in enumerate(COLUMNS)}

_POOL_OPS = {OP_CODES[o] for o in ("avgpool", "maxpool", "global_avgpool")}


@dataclass(frozen=True)
class SpecArrays:
    columns: np.ndarray  # (len(COLUMNS), n_layers) int64: one contiguous row per quantity
    macs: int  # per sample, the whole network
    params: int
    blocks: tuple[BlockSig, ...]
    # Each block in the `generic` key format (keys.py): strings hash once, so table look-ups
    # on them are cheap.
    block_keys: tuple[str, ...]
    # Product of the strides of the blocks before each block: its input is ceil(r / stride)
    # pixels wide at input resolution r. 0 after a global pool (everything is then 1x1).
    block_strides: tuple[int, ...]

    @classmethod
    def of(cls, spec: NetworkSpec) -> SpecArrays:
        layers = spec.layers
        n = len(layers)
        rows = np.array(
            [
                (
                    OP_CODES[ly.op],
                    *ly.in_shape,
                    *ly.out_shape,
                    ly.kernel,
                    ly.stride,
                    ly.groups,
                    ACT_CODES[ly.act],
                    ly.bn,
                    ly.bias,
                )
                for ly in layers
            ],
            dtype=np.int64,
        ).reshape(n, 13)
        table = np.zeros((n, len(COLUMNS)), dtype=np.int64)
        table[:, COL["op"]] = rows[:, 0]
        table[:, COL["cin"] : COL["cin"] + 13 - 1] = rows[:, 1:]
        op, cin, hin, win = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        cout, hout, wout, k, g = rows[:, 4], rows[:, 5], rows[:, 6], rows[:, 7], rows[:, 9]
        is_conv = op == OP_CODES["conv"]
        is_linear = op == OP_CODES["linear"]
        cls_ = np.full(n, CLASS_CODES["elementwise"], dtype=np.int64)
        cls_[np.isin(op, list(_POOL_OPS))] = CLASS_CODES["pool"]
        cls_[is_linear] = CLASS_CODES["linear"]
        dense = is_conv & (g == 1)
        cls_[dense & (k > 1)] = CLASS_CODES["conv"]
        cls_[dense & (k == 1)] = CLASS_CODES["pointwise"]
        cls_[is_conv & (g > 1) & (g == cin)] = CLASS_CODES["depthwise"]
        cls_[is_conv & (g > 1) & (g != cin)] = CLASS_CODES["grouped"]
        table[:, COL["cls"]] = cls_
        in_elems = cin * hin * win
        out_elems = cout * hout * wout
        weights = np.where(is_conv, cout * (cin // np.maximum(g, 1)) * k * k, 0)
        weights = np.where(is_linear, cin * cout, weights)
        is_const = op == OP_CODES["const"]  # a generator's learned input: stored values
        weights = np.where(is_const, out_elems, weights)
        macs = np.where(is_conv, weights * hout * wout, 0) + np.where(is_linear, cin * cout, 0)
        table[:, COL["macs"]] = macs
        table[:, COL["weights"]] = weights
        table[:, COL["in_elems"]] = in_elems
        table[:, COL["out_elems"]] = out_elems
        inputs_elems, held, in_dies = _liveness(spec, out_elems)
        table[:, COL["inputs_elems"]] = inputs_elems
        table[:, COL["held_elems"]] = held
        table[:, COL["in_dies"]] = in_dies
        blocks, strides = _blocks(spec)
        bias_bn = rows[:, 12] * cout + rows[:, 11] * 2 * cout
        params = int(np.sum(np.where(is_conv | is_linear, weights + bias_bn, weights)))
        keys = tuple(generic_key(sig, i) for i, sig in enumerate(blocks))
        columns = np.ascontiguousarray(table.T)
        return cls(columns, int(macs.sum()), params, blocks, keys, strides)


def _liveness(
    spec: NetworkSpec, out_elems: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elements read by each layer, elements of other tensors alive while it runs, and
    whether its first input dies with it.

    Tensor t (the output of layer t; t = n is the network input) lives from the layer that
    writes it to the last layer that reads it; the last layer's output lives to the end.
    """
    layers = spec.layers
    n = len(layers)
    c, h, w = spec.input_shape
    sizes = np.append(out_elems, c * h * w)
    index = {ly.name: i for i, ly in enumerate(layers)}
    src0 = np.array([index[ly.inputs[0]] if ly.inputs else n for ly in layers], dtype=np.int64)
    second = [(i, index[ly.inputs[1]]) for i, ly in enumerate(layers) if len(ly.inputs) > 1]
    src1 = np.full(n, -1, dtype=np.int64)  # -1: no second input
    if second:
        rows, cols = zip(*second, strict=True)
        src1[list(rows)] = cols
    consumers = np.arange(n)
    producer = np.append(consumers, -1)
    last = producer.copy()  # a tensor nobody reads dies where it is written
    np.maximum.at(last, src0, consumers)
    has2 = src1 >= 0
    np.maximum.at(last, src1[has2], consumers[has2])
    last[n - 1] = n
    # alive[i]: tensors written before layer i and read after it (a difference array)
    spans = last > producer + 1
    diff = np.zeros(n + 2, dtype=np.int64)
    np.add.at(diff, producer[spans] + 1, sizes[spans])
    np.add.at(diff, last[spans], -sizes[spans])
    alive = np.cumsum(diff)[:n]
    s1 = np.where(has2, src1, n)  # a placeholder index where there is no second input
    inputs = sizes[src0] + np.where(has2, sizes[s1], 0)
    # an input read again later is alive, but it is already counted as an input
    held = alive - np.where(last[src0] > consumers, sizes[src0], 0)
    held -= np.where(has2 & (s1 != src0) & (last[s1] > consumers), sizes[s1], 0)
    return inputs, held, (last[src0] == consumers).astype(np.int64)


def _blocks(spec: NetworkSpec) -> tuple[tuple[BlockSig, ...], tuple[int, ...]]:
    sigs: list[BlockSig] = []
    strides: list[int] = []
    cumulative = 1
    for b in spec.blocks:
        sigs.append(b.signature)
        strides.append(cumulative)
        pooled = b.kind == "global_avgpool" or (
            "stride" not in b.attrs and b.out_shape[1:] == (1, 1) and b.in_shape[1:] != (1, 1)
        )
        if pooled:
            cumulative = 0
        elif cumulative:
            cumulative *= int(b.attrs.get("stride", 1))
    return tuple(sigs), tuple(strides)


@dataclass(frozen=True)
class SpecBatch:
    """The layer rows of many specs, concatenated; reductions return one value per spec."""

    specs: Sequence[NetworkSpec]
    columns: np.ndarray  # (len(COLUMNS), total layers)
    starts: np.ndarray
    counts: np.ndarray
    batch: np.ndarray  # samples per inference, per spec (float64)

    @classmethod
    def of(cls, specs: Sequence[NetworkSpec]) -> SpecBatch:
        tables = [s.arrays.columns for s in specs]
        counts = np.fromiter((t.shape[1] for t in tables), dtype=np.int64, count=len(tables))
        starts = np.zeros(len(tables), dtype=np.int64)
        if len(tables) > 1:
            np.cumsum(counts[:-1], out=starts[1:])
        if tables:
            columns = np.concatenate(tables, axis=1)
        else:
            columns = np.zeros((len(COLUMNS), 0), np.int64)
        batch = np.fromiter((s.batch for s in specs), dtype=np.float64, count=len(specs))
        return cls(specs, columns, starts, counts, batch)

    def __len__(self) -> int:
        return len(self.specs)

    def col(self, name: str) -> np.ndarray:
        return self.columns[COL[name]]

    def per_layer(self, per_spec: np.ndarray) -> np.ndarray:
        """Broadcast one value per spec to that spec's layers."""
        return np.repeat(per_spec, self.counts)

    def sum(self, values: np.ndarray) -> np.ndarray:
        if not len(self.specs):
            return np.zeros(0)
        return np.add.reduceat(values, self.starts)

    def max(self, values: np.ndarray) -> np.ndarray:
        if not len(self.specs):
            return np.zeros(0)
        return np.maximum.reduceat(values, self.starts)
