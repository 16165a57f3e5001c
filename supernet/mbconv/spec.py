"""The layers of an MBConv arch, as a latency_models.NetworkSpec.

`MBConvSpace` resolves an arch into a `NetPlan` (every channel count); this module turns a plan
into layers, block by block. Each block is built once per distinct block and input shape and
cached: a search builds thousands of specs from a few hundred distinct blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from latency_models import BlockSpec, LayerSpec, NetworkSpec, SpecBuilder
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
