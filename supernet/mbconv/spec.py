"""The layers of an MBConv arch, as a latency_models.NetworkSpec.

`MBConvSpace` resolves an arch into a `NetPlan` (every channel count); this module turns a plan
into layers, block by block. Each block is built once per distinct block and input shape and
cached: a search builds thousands of specs from a few hundred distinct blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from latency_models import BlockSpec, LayerSpec, NetworkSpec, SpecBatch, SpecBuilder
from latency_models.arrays import PartTable, split_parts
from latency_models.spec import Shape

if TYPE_CHECKING:
    from supernet.mbconv.space import BlockPlan, MBConvSpace, NetPlan
    from supernet.space import CanonicalArch


def network_spec(space: MBConvSpace, plan: NetPlan, arch_id: str, batch: int = 1) -> NetworkSpec:
    """The network of `plan` (an arch of `space`, id `arch_id`): stem, blocks, head."""
    c = space.config
    r = plan.resolution
    parts = [
        _conv_part(
            "stem",
            (c.in_channels, r, r),
            None,
            plan.stem_channels,
            3,
            c.stem_stride,
            c.stem_act,
            True,
        )
    ]
    for blk in plan.blocks:
        parts.append(_mbconv_part(blk, parts[-1][1].out_shape, parts[-1][0][-1].name))
    head = plan.head_channels
    parts.append(
        _conv_part(
            "final_expand",
            parts[-1][1].out_shape,
            parts[-1][0][-1].name,
            head[0],
            1,
            1,
            c.head_act,
            True,
        )
    )
    parts.append(_pool_part(parts[-1][1].out_shape, parts[-1][0][-1].name))
    if c.head == "mbv3":
        parts.append(
            _conv_part(
                "feature_mix",
                parts[-1][1].out_shape,
                parts[-1][0][-1].name,
                head[1],
                1,
                1,
                c.head_act,
                False,
            )
        )
    parts.append(_linear_part(parts[-1][1].out_shape, parts[-1][0][-1].name, c.num_classes))
    return NetworkSpec(
        layers=tuple(layer for layers, _ in parts for layer in layers),
        input_shape=(c.in_channels, r, r),
        batch=batch,
        name=f"{space.name}:{arch_id}",
        blocks=tuple(block for _, block in parts),
    )


class PartCodes:
    """A generation of archs as part codes, and their SpecBatch from a PartTable.

    A network of an MBConv space is three kinds of part, each a run of whole blocks:
      prefix: the stem and the fixed first block, set by (r, w);
      block i: elastic block i where active, set by (i, kernel, expand, r, w): its input
        channels and size depend only on its place (a stage's first block is never skipped,
        so the strides before it are fixed) and on r and w;
      suffix: the head (final expand, pool, [feature mix], classifier), set by (r, w).
    Every code is an integer in a dense range, computed from the gene arrays with numpy. A
    part is stored the first time an arch holds it, cut from that arch's NetworkSpec, so
    the rows are those of `to_spec` by construction (tests compare every space)."""

    def __init__(self, space: MBConvSpace) -> None:
        c = space.config
        self.space = space
        self.resolutions = np.array(sorted(c.resolutions))
        self.widths = np.array(sorted(c.width_mults), dtype=float)
        self.kernels = np.array(sorted(c.kernel_sizes))
        self.expands = np.array(sorted(c.expand_ratios))
        self.stage_of = np.array([s for s, _ in space.block_stage])
        self.index_in_stage = np.array([j for _, j in space.block_stage])
        rw = len(self.resolutions) * len(self.widths)
        self.rw = rw
        self.block_base = 2 * rw  # codes: prefix [0, rw), suffix [rw, 2 rw), then blocks
        per_block = len(self.kernels) * len(self.expands) * rw
        self.per_block = per_block
        self.table = PartTable(self.block_base + space.num_blocks * per_block)

    def codes(self, archs: Sequence[CanonicalArch]) -> np.ndarray:
        """(n, blocks + 2): prefix, every elastic block (-1 where inactive), suffix."""
        n, space = len(archs), self.space
        r = np.searchsorted(self.resolutions, np.array([a["r"] for a in archs], np.int64))
        if space.config.elastic_width:
            w = np.searchsorted(self.widths, np.array([a["w"] for a in archs], float))
        else:
            w = np.zeros(n, dtype=np.int64)
        rw = r * len(self.widths) + w
        blocks_n, stages_n = space.num_blocks, len(space.config.stages)
        ks = np.array([a["ks"] for a in archs], np.int64).reshape(n, blocks_n)
        es = np.array([a["e"] for a in archs], np.int64).reshape(n, blocks_n)
        ks, es = np.searchsorted(self.kernels, ks), np.searchsorted(self.expands, es)
        depth = np.array([a["d"] for a in archs], np.int64).reshape(n, stages_n)
        active = self.index_in_stage[None, :] < depth[:, self.stage_of]
        ke = ks * len(self.expands) + es
        blocks = self.block_base + np.arange(space.num_blocks) * self.per_block
        blocks = blocks[None, :] + ke * self.rw + rw[:, None]
        out = np.empty((n, space.num_blocks + 2), dtype=np.int64)
        out[:, 0] = rw
        out[:, 1:-1] = np.where(active, blocks, -1)
        out[:, -1] = self.rw + rw
        return out

    def batch(self, archs: Sequence[CanonicalArch], batch: int) -> SpecBatch:
        codes = self.codes(archs)
        for i in self.table.missing(codes):
            self._store(archs[i], codes[i])
        space = self.space
        r = np.array([a["r"] for a in archs], dtype=np.int64)
        shapes = np.stack([np.full_like(r, space.config.in_channels), r, r], axis=1)

        def name(i: int) -> str:
            return f"{space.name}:{space.arch_id(archs[i])}"

        return self.table.batch(codes, batch, shapes, name)

    def _store(self, arch: CanonicalArch, codes: np.ndarray) -> None:
        spec = self.space.to_spec(arch)
        layers: dict[str, int] = {}
        for layer in spec.layers:
            layers[layer.block] = layers.get(layer.block, 0) + 1
        per_block = [layers.get(b.name, 0) for b in spec.blocks]
        present = codes[codes >= 0]
        suffix = len(spec.blocks) - 2 - (len(present) - 2)  # blocks after the last elastic one
        sizes = [2, *([1] * (len(present) - 2)), suffix]
        self.table.add(present.tolist(), split_parts(spec.arrays, sizes, per_block))


def block_cover(
    space: MBConvSpace, resolutions: Sequence[int] | None = None
) -> list[CanonicalArch]:
    """Every resolution (and width) with all blocks at each (kernel, expand) choice and full
    depth: together they hold every distinct block shape (what a look-up table must time)."""
    c = space.config
    archs = []
    for r in resolutions or c.resolutions:
        for w in c.width_mults if c.elastic_width else [None]:
            for k in c.kernel_sizes:
                for e in c.expand_ratios:
                    arch: dict[str, Any] = {
                        "ks": [k] * space.num_blocks,
                        "e": [e] * space.num_blocks,
                        "d": [max(s.depths) for s in c.stages],
                        "r": r,
                    }
                    if w is not None:
                        arch["w"] = w
                    archs.append(space.canonical(arch))
    return archs


# Spec parts: (layers, block) of one block, built once per distinct block and input, cached.
SpecPart = tuple[tuple[LayerSpec, ...], BlockSpec]


def _builder(name: str, in_shape: Shape, src: str | None) -> tuple[SpecBuilder, str | None]:
    b = SpecBuilder(in_shape)
    if src is not None:
        b.external(src, in_shape)
    b.begin_block(name)
    return b, src


def _finish(b: SpecBuilder, kind: str, in_shape: Shape, **attrs: Any) -> SpecPart:
    b.end_block(kind, in_shape, **attrs)
    return tuple(b.layers), b.blocks[0]


@functools.lru_cache(maxsize=1 << 16)
def _conv_part(
    name: str,
    in_shape: Shape,
    src: str | None,
    width: int,
    kernel: int,
    stride: int,
    act: str,
    bn: bool,
) -> SpecPart:
    b, src = _builder(name, in_shape, src)
    b.conv(name, width, kernel=kernel, stride=stride, act=act, bn=bn, src=src)
    return _finish(b, "conv", in_shape, kernel=kernel, stride=stride, act=act)


@functools.lru_cache(maxsize=1 << 16)
def _pool_part(in_shape: Shape, src: str) -> SpecPart:
    b, src = _builder("pool", in_shape, src)
    b.global_avgpool("pool", src=src)
    return _finish(b, "global_avgpool", in_shape)


@functools.lru_cache(maxsize=1 << 16)
def _linear_part(in_shape: Shape, src: str, classes: int) -> SpecPart:
    b, src = _builder("classifier", in_shape, src)
    b.linear("classifier", classes, src=src)
    return _finish(b, "linear", in_shape)


@functools.lru_cache(maxsize=1 << 16)
def _mbconv_part(blk: BlockPlan, in_shape: Shape, src: str) -> SpecPart:
    name = f"blocks.{blk.index}"
    b, src = _builder(name, in_shape, src)
    if blk.expand != 1:
        b.conv(f"{name}.expand", blk.mid_channels, act=blk.act, src=src)
    dw = b.conv(
        f"{name}.depthwise",
        blk.mid_channels,
        kernel=blk.kernel,
        stride=blk.stride,
        groups=blk.mid_channels,
        act=blk.act,
        src=b.last or src,
    )
    if blk.se_channels:
        b.global_avgpool(f"{name}.se.pool")
        b.conv(f"{name}.se.reduce", blk.se_channels, bias=True, bn=False, act="relu")
        gate = b.conv(f"{name}.se.expand", blk.mid_channels, bias=True, bn=False, act="h_sigmoid")
        b.mul(f"{name}.se.scale", dw, gate)
    project = b.conv(f"{name}.project", blk.out_channels)
    if blk.residual:
        b.add(f"{name}.add", project, src)
    return _finish(
        b,
        "mbconv",
        in_shape,
        mid=blk.mid_channels,
        kernel=blk.kernel,
        stride=blk.stride,
        expand=blk.expand,
        skip=blk.residual,
        se=bool(blk.se_channels),
        act=blk.act,
    )
