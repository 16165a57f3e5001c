"""A NetworkSpec as numbers: one int64 row per layer, for cost models vectorised over many specs.

`NetworkSpec.arrays` builds this once per spec (it is cached on the spec, so every device that
costs the spec shares it). `SpecBatch` concatenates the rows of many specs so that a cost model
computes all their layers with a few numpy operations and reduces them per spec.

A search does not need a NetworkSpec per candidate: `PartTable` keeps the rows of each distinct
part of a space's networks (a block at its input shape), and a space assembles a generation's
`SpecBatch` from part ids with a few numpy operations (`SearchSpace.spec_batch`). Both paths
give the same rows, so every cost model gives the same costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
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
    input_shape: tuple[int, ...] = ()  # (channels, height, width) of one sample
    name: str = ""

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
        keys = tuple(generic_key(sig, i) for i, sig in enumerate(blocks))
        columns = np.ascontiguousarray(table.T)
        return cls(
            columns,
            int(macs.sum()),
            _params(columns),
            blocks,
            keys,
            strides,
            tuple(spec.input_shape),
            spec.name,
        )


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


class SpecBatch:
    """The layer rows of many specs, concatenated; reductions return one value per spec.

    Per spec: `batch` (samples per inference), `macs` and `params` (per sample) and
    `input_shapes` (channels, height, width). Blocks come as segments: each spec is a run
    of segments (`segment_ids`, `segment_counts`), and `segments[id]` holds the blocks of
    one (their signatures, keys and the stride products before them). A batch built from
    specs has one segment per spec; one a space assembles has one per stored part, shared
    by every network that holds it, so a table model sums each distinct part once.
    `arrays`, each spec's own SpecArrays, is built only when something asks for it."""

    def __init__(
        self,
        columns: np.ndarray,  # (len(COLUMNS), total layers)
        counts: np.ndarray,  # layers per spec
        batch: np.ndarray,  # samples per inference, per spec (float64)
        macs: np.ndarray,
        params: np.ndarray,
        input_shapes: np.ndarray,  # (n, 3)
        segment_ids: np.ndarray,
        segment_counts: np.ndarray,
        segments: Sequence[SpecArrays | Part],
        arrays: Sequence[SpecArrays] | Callable[[], Sequence[SpecArrays]],
    ) -> None:
        self.columns, self.counts, self.batch = columns, counts, batch
        self.macs, self.params, self.input_shapes = macs, params, input_shapes
        self.segment_ids, self.segment_counts = segment_ids, segment_counts
        self.segments = segments
        self.starts = np.zeros(len(counts), dtype=np.int64)
        if len(counts) > 1:
            np.cumsum(counts[:-1], out=self.starts[1:])
        self._arrays = arrays

    @classmethod
    def of(cls, specs: Sequence[NetworkSpec]) -> SpecBatch:
        arrays = [s.arrays for s in specs]
        tables = [a.columns for a in arrays]
        n = len(specs)
        counts = np.fromiter((t.shape[1] for t in tables), dtype=np.int64, count=n)
        if tables:
            columns = np.concatenate(tables, axis=1)
        else:
            columns = np.zeros((len(COLUMNS), 0), np.int64)
        return cls(
            columns,
            counts,
            np.fromiter((s.batch for s in specs), dtype=np.float64, count=n),
            np.fromiter((a.macs for a in arrays), dtype=np.int64, count=n),
            np.fromiter((a.params for a in arrays), dtype=np.int64, count=n),
            _input_shapes(specs),
            np.arange(n),
            np.ones(n, dtype=np.int64),
            arrays,
            arrays,
        )

    @cached_property
    def arrays(self) -> Sequence[SpecArrays]:
        return self._arrays() if callable(self._arrays) else self._arrays

    def with_batch(self, batch: int) -> SpecBatch:
        """The same networks at another batch size (the rows are shared, not copied)."""
        return SpecBatch(
            self.columns,
            self.counts,
            np.full(len(self.counts), float(batch)),
            self.macs,
            self.params,
            self.input_shapes,
            self.segment_ids,
            self.segment_counts,
            self.segments,
            lambda: self.arrays,
        )

    @cached_property
    def segment_owner(self) -> np.ndarray:
        """The spec of each entry of `segment_ids`."""
        return np.repeat(np.arange(len(self)), self.segment_counts)

    @cached_property
    def segment_first(self) -> np.ndarray:
        """Whether each entry of `segment_ids` is its spec's first (it holds the first block)."""
        first = np.zeros(len(self.segment_ids), dtype=bool)
        starts = np.cumsum(self.segment_counts) - self.segment_counts
        first[starts[self.segment_counts > 0]] = True
        return first

    @cached_property
    def block_counts(self) -> np.ndarray:
        """Blocks per spec."""
        per_segment = np.fromiter((len(seg.blocks) for seg in self.segments), np.int64)
        return np.bincount(
            self.segment_owner, per_segment[self.segment_ids], minlength=len(self)
        ).astype(np.int64)

    def __len__(self) -> int:
        return len(self.counts)

    def col(self, name: str) -> np.ndarray:
        return self.columns[COL[name]]

    def per_layer(self, per_spec: np.ndarray) -> np.ndarray:
        """Broadcast one value per spec to that spec's layers."""
        return np.repeat(per_spec, self.counts)

    def sum(self, values: np.ndarray) -> np.ndarray:
        if not len(self):
            return np.zeros(0)
        return np.add.reduceat(values, self.starts)

    def max(self, values: np.ndarray) -> np.ndarray:
        if not len(self):
            return np.zeros(0)
        return np.maximum.reduceat(values, self.starts)


def _input_shapes(specs: Sequence[NetworkSpec]) -> np.ndarray:
    """(n, 3): channels, height, width; a spec whose input is not an image gets zeros."""
    out = np.zeros((len(specs), 3), dtype=np.int64)
    for i, spec in enumerate(specs):
        if len(spec.input_shape) == 3:
            out[i] = spec.input_shape
    return out


@dataclass(frozen=True)
class Part:
    """A run of whole blocks of a network, as SpecArrays holds them: its layer rows, MACs and
    parameters, and per block the signature, key and stride product before it."""

    columns: np.ndarray
    macs: int
    params: int
    blocks: tuple[BlockSig, ...]
    block_keys: tuple[str, ...]
    block_strides: tuple[int, ...]


def split_parts(
    arrays: SpecArrays, blocks_per_part: Sequence[int], layers_per_block: Sequence[int]
) -> list[Part]:
    """Cut a network's SpecArrays into parts of `blocks_per_part` blocks each.

    Valid where a part's rows do not depend on the parts around it: networks that are a
    chain of blocks, where only a block's own layers read its input (a residual add
    included), so liveness stays inside the block."""
    layer_ends = np.cumsum(layers_per_block)
    block_ends = np.cumsum(blocks_per_part)
    parts, block0, layer0 = [], 0, 0
    for block1 in block_ends:
        layer1 = int(layer_ends[block1 - 1]) if block1 else 0
        cols = arrays.columns[:, layer0:layer1]
        macs = int(cols[COL["macs"]].sum())
        parts.append(
            Part(
                np.ascontiguousarray(cols),
                macs,
                _params(cols),
                arrays.blocks[block0:block1],
                arrays.block_keys[block0:block1],
                arrays.block_strides[block0:block1],
            )
        )
        block0, layer0 = int(block1), layer1
    return parts


def _params(cols: np.ndarray) -> int:
    """Parameters of some layer rows: a conv's or linear layer's weights, bias and BatchNorm
    (scale and shift); a const's stored values."""
    op = cols[COL["op"]]
    weighted = (op == OP_CODES["conv"]) | (op == OP_CODES["linear"])
    bias_bn = cols[COL["bias"]] * cols[COL["cout"]] + cols[COL["bn"]] * 2 * cols[COL["cout"]]
    return int(np.sum(np.where(weighted, cols[COL["weights"]] + bias_bn, cols[COL["weights"]])))


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """start_0, ..., start_0 + length_0 - 1, start_1, ...: the indices of many runs, in order,
    with no Python loop."""
    first = np.cumsum(lengths) - lengths  # where each run begins in the output
    return np.arange(int(lengths.sum())) + np.repeat(starts - first, lengths)


class PartTable:
    """The parts of one space's networks, each stored once under an integer code the space
    computes from genes, and the SpecBatch of a generation assembled from their codes."""

    def __init__(self, n_codes: int) -> None:
        self._index = np.full(n_codes, -1, dtype=np.int64)  # code -> part number
        self._parts: list[Part] = []
        self._store = np.zeros((len(COLUMNS), 0), np.int64)  # every part's rows, in order
        self._offset = np.zeros(0, np.int64)
        self._length = np.zeros(0, np.int64)
        self._macs = np.zeros(0, np.int64)
        self._params = np.zeros(0, np.int64)
        self._pending: list[Part] = []

    def missing(self, codes: np.ndarray) -> np.ndarray:
        """Rows of a code matrix (-1: no part there) that hold a code not stored yet."""
        known = np.where(codes >= 0, self._index[np.maximum(codes, 0)], 0)
        return np.flatnonzero((known < 0).any(axis=1))

    def add(self, codes: Sequence[int], parts: Sequence[Part]) -> None:
        for code, part in zip(codes, parts, strict=True):
            if code >= 0 and self._index[code] < 0:
                self._index[code] = len(self._parts) + len(self._pending)
                self._pending.append(part)

    def _flush(self) -> None:
        if not self._pending:
            return
        new = self._pending
        self._pending = []
        self._parts.extend(new)
        lengths = np.array([p.columns.shape[1] for p in new], np.int64)
        self._offset = np.append(self._offset, self._store.shape[1] + np.cumsum(lengths) - lengths)
        self._length = np.append(self._length, lengths)
        self._macs = np.append(self._macs, [p.macs for p in new])
        self._params = np.append(self._params, [p.params for p in new])
        self._store = np.concatenate([self._store, *(p.columns for p in new)], axis=1)

    def batch(
        self,
        codes: np.ndarray,
        batch: int,
        input_shapes: np.ndarray,
        name: Callable[[int], str],
    ) -> SpecBatch:
        """The SpecBatch of networks given as rows of part codes (-1: no part), every code
        stored, with their input shapes (n, 3). `name(i)`: network i's name, asked only
        where something reads a network's own SpecArrays."""
        self._flush()
        n = len(codes)
        present = codes >= 0
        parts = self._index[codes[present]]  # row-major: each network's parts in order
        if (parts < 0).any():
            raise KeyError("a part code is not stored; add the parts of `missing` rows first")
        per_network = present.sum(axis=1)
        lengths = self._length[parts]
        total = int(lengths.sum())
        # every layer's column in the store: each part's offset, then 0, 1, ... within it
        layer = concatenated_ranges(self._offset[parts], lengths)
        # row by row: a fancy index along axis 1 would give a strided (Fortran-order) result,
        # and every numpy operation of every model on its rows would be several times slower
        columns = np.empty((len(COLUMNS), total), dtype=np.int64)
        for row in range(len(COLUMNS)):
            columns[row] = self._store[row][layer]
        ends = np.cumsum(per_network)
        owner = np.repeat(np.arange(n), per_network)
        counts = np.bincount(owner, lengths, minlength=n).astype(np.int64)
        macs = np.bincount(owner, self._macs[parts], minlength=n).astype(np.int64)
        params = np.bincount(owner, self._params[parts], minlength=n).astype(np.int64)
        table = self._parts

        def arrays() -> list[SpecArrays]:
            out, layer0, part0 = [], 0, 0
            for i in range(n):
                chosen = [table[p] for p in parts[part0 : ends[i]]]
                layer1 = layer0 + int(counts[i])
                out.append(
                    SpecArrays(
                        columns[:, layer0:layer1],
                        int(macs[i]),
                        int(params[i]),
                        tuple(b for p in chosen for b in p.blocks),
                        tuple(k for p in chosen for k in p.block_keys),
                        tuple(s for p in chosen for s in p.block_strides),
                        tuple(int(x) for x in input_shapes[i]),
                        name(i),
                    )
                )
                layer0, part0 = layer1, int(ends[i])
            return out

        return SpecBatch(
            columns,
            counts,
            np.full(n, float(batch)),
            macs,
            params,
            input_shapes,
            parts,
            per_network,
            table,
            arrays,
        )
