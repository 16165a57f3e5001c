"""Classic CNN families as NetworkSpecs, named and shaped as timm builds them.

These are the networks of public GPU benchmark tables (timm's `results/*.csv`, NVIDIA's
DeepLearningExamples, pycls, PaddleClas, MLPerf; see latency_models/profiles/gpu/public/),
described layer by layer so that a cost model can be calibrated on measurements of them.
`FAMILIES` names 130 networks by their timm names: ResNet (18..152, and the c/d/s/t stems),
ResNeXt, wide ResNet, MobileNetV2, MobileNetV3 (large, small, minimal), EfficientNet B0-B7,
-Lite0..4 and -EdgeTPU (with the `tf_` ports), TinyNet, MnasNet (mnasnet_* is MnasNet-B1,
semnasnet_* MnasNet-A1), SPNASNet, FBNet-C, PP-LCNet, RegNetX/Y 200MF..32GF and VGG.

The shapes follow timm's builders (github.com/huggingface/pytorch-image-models, checked at
commit aa4b5850): ResNet v1.5 (stride on the 3x3 of a bottleneck), the EfficientNet builder's
channel rounding (`make_divisible` to multiples of 8, never more than 10% down; MobileNetV2
keeps its 1280-wide head below width 1), its depth scaling (`ceil`, spread over a stage from
its last block def; only a stage's first block strides), RegNet's quantized linear widths,
and timm's VGG head (a 7x7 conv "pre_logits" in place of the first linear layer).

Every network's params and MACs (convolutions and linear layers) equal those of timm's own
model, which it also matches layer for layer (checked with `lm.trace` at several
resolutions; see tests/latency_models/test_families.py). timm's benchmark column
`infer_gmacs` (fvcore) also counts 2 per BatchNorm output element and the final pool's
input; `fvcore_macs` gives that count, to compare with the tables.

A BatchNorm and an activation that follow a conv are flags of that conv layer. A residual
sum is an `add` layer (ResNet and RegNet then apply a ReLU: an `act` layer). A
squeeze-and-excitation gate is global_avgpool -> conv (reduce, bias, act) -> conv (expand,
bias, gate act) -> mul. timm's `tf_` variants use TensorFlow 'SAME' padding: the same shapes
and counts (an extra pad op per strided conv in eager PyTorch, which a spec does not show).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from latency_models.errors import SpecError, UnknownNetworkError
from latency_models.spec import NetworkSpec, SpecBuilder

_TIMM = "timm (huggingface/pytorch-image-models) @aa4b5850"


# ----- configs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetCfg:
    """timm ResNet: `stem` '' is a 7x7 conv; 'deep' three 3x3 convs (w, w, 2w); 'deep_tiered'
    (3*(w//4), w, 2w). `avg_down`: a 2x2 average pool before the 1x1 downsample conv ('d')."""

    block: str  # "basic" | "bottleneck"
    layers: tuple[int, int, int, int]
    stem: str = ""
    stem_width: int = 64
    avg_down: bool = False
    cardinality: int = 1
    base_width: int = 64


class B(NamedTuple):
    """One block definition of an MBConv-family stage, repeated `repeats` times.

    kind: "ds" depthwise-separable (dw -> [SE] -> pw), "dsa" the same with an activation after
    pw and never a skip (LCNet), "ir" inverted residual (pw -> dw -> [SE] -> pwl), "er" edge
    residual (kxk expand -> [SE] -> pwl), "cn" conv-BN-act."""

    kind: str
    repeats: int
    kernel: int
    stride: int
    out: int
    expand: float = 1.0
    se: float = 0.0
    act: str | None = None  # overrides the network's activation
    noskip: bool = False
    force_in: int = 0  # "er": expand from this width instead of the input's (EdgeTPU nets)


@dataclass(frozen=True)
class MBNetCfg:
    """timm's EfficientNet/MobileNetV3 builders: stem conv, stages of blocks, head."""

    stages: tuple[tuple[B, ...], ...]
    width: float = 1.0
    depth: float = 1.0
    depth_trunc: str = "ceil"  # "ceil" | "round"
    fix_first_last: bool = False  # the first and last stages keep their depth
    stem: int = 32
    fix_stem: bool = False  # the stem keeps its width
    head: int = 1280  # width of the final 1x1 conv (already scaled where timm scales it)
    head_after_pool: bool = False  # MobileNetV3/LCNet: pool, then 1x1 conv with bias, no BN
    act: str = "relu"
    se_gate: str = "sigmoid"
    se_act: str | None = None  # None: the block's activation
    se_from_exp: bool = False  # SE ratio of the expanded width (else of the block input)
    se_divisible: bool = False  # SE width rounded with make_divisible (else round)


@dataclass(frozen=True)
class RegNetCfg:
    """RegNet's design-space parameters (Radosavovic et al. 2020), as timm lists them."""

    w0: int
    wa: float
    wm: float
    group_size: int
    depth: int
    se: float = 0.0
    stem: int = 32


@dataclass(frozen=True)
class VGGCfg:
    convs: tuple[int | str, ...]  # widths, "M" for a 2x2 max pool
    bn: bool = False


Cfg = ResNetCfg | MBNetCfg | RegNetCfg | VGGCfg


@dataclass(frozen=True)
class FamilyNet:
    name: str  # timm's model name
    family: str
    resolution: int  # timm's default (pretrained config) input size
    reference: str
    cfg: Cfg


# ----- channel rules --------------------------------------------------------------------------


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, at least `min_value`
    (default: `divisor`), never more than 10% below `value`.

    The rule MobileNet, once-for-all, MCUNet and timm's EfficientNet builder all use; widths
    must match theirs exactly. The one copy: supernet's spaces use it too. An explicit
    min_value=0 is kept (a zero width stays 0), as once-for-all's make_divisible does; timm's
    `min_value or divisor` would read it as the default. No caller passes min_value, and for
    any positive value the two agree (the 10% rule lifts a rounding to 0 back to `divisor`).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _round_channels(channels: float, multiplier: float) -> int:
    return make_divisible(channels * multiplier)


def _scaled_stage(stage: tuple[B, ...], multiplier: float, trunc: str) -> list[B]:
    """A stage's blocks, one per repeat, its total depth scaled by `multiplier` and the new
    count spread back over its block defs from the last one (as timm's EfficientNet does)."""
    repeats = [blk.repeats for blk in stage]
    total = sum(repeats)
    if trunc == "round":
        scaled = max(1, round(total * multiplier))
    else:
        scaled = math.ceil(total * multiplier)
    counts = []
    for r in reversed(repeats):
        n = max(1, round(r / total * scaled))
        counts.append(n)
        total -= r
        scaled -= n
    counts.reverse()
    return [blk for blk, n in zip(stage, counts, strict=True) for _ in range(n)]


def regnet_stages(cfg: RegNetCfg, quant: int = 8) -> list[tuple[int, int, int]]:
    """(width, depth, group size) of each stage: per-block widths w0 + wa*i, snapped to
    w0 * wm^k and quantized to multiples of `quant`; a group size never exceeds the width,
    and the width is rounded to a multiple of the group size."""
    widths = []
    for i in range(cfg.depth):
        exp = round(math.log((i * cfg.wa + cfg.w0) / cfg.w0) / math.log(cfg.wm))
        widths.append(int(round(cfg.w0 * cfg.wm**exp / quant) * quant))
    stages = []
    for w in sorted(set(widths)):
        gs = min(cfg.group_size, w)
        stages.append((int(round(w / gs) * gs), widths.count(w), gs))
    return stages


# ----- a builder with the few shapes 'same' padding cannot express ----------------------------


def _pooled(size: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    """torch's output size for a pool or conv (floor or ceil mode)."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _Builder(SpecBuilder):
    @contextmanager
    def as_block(self, name: str, kind: str, **attrs: Any) -> Iterator[None]:
        """The layers added inside the `with` form one block of `kind`."""
        in_shape = self.shape(self.last)
        self.begin_block(name)
        yield
        self.end_block(kind, in_shape, **attrs)

    def pool_exact(
        self,
        name: str,
        op: str,
        kernel: int,
        stride: int,
        ceil: bool = False,
        src: str | None = "",
    ) -> str:
        """A pool without padding (a 2x2 pool cannot use 'same' padding)."""
        src = self._src(src)
        c, h, w = self.shape(src)
        out = (c, _pooled(h, kernel, stride, 0, ceil), _pooled(w, kernel, stride, 0, ceil))
        return self._add(name, op, src, out, kernel=kernel, stride=stride)

    def conv_valid(self, name: str, out_channels: int, kernel: int, act: str | None) -> str:
        """A conv with bias and without padding (VGG's 7x7 'pre_logits' conv)."""
        src = self.last
        _, h, w = self.shape(src)
        out = (out_channels, h - kernel + 1, w - kernel + 1)
        return self._add(name, "conv", src, out, kernel=kernel, bias=True, act=act)

    def se(self, prefix: str, reduced: int, act: str, gate: str) -> str:
        """Squeeze-and-excitation on the last layer: pool, reduce, expand, gate."""
        x = self.last
        channels = self.shape(x)[0]
        self.global_avgpool(f"{prefix}.pool", src=x)
        self.conv(f"{prefix}.conv_reduce", reduced, bias=True, bn=False, act=act)
        gate_layer = self.conv(f"{prefix}.conv_expand", channels, bias=True, bn=False, act=gate)
        return self.mul(f"{prefix}.mul", x, gate_layer)

    def conv_block(self, name: str, out: int, kernel: int, stride: int = 1, **kw: Any) -> str:
        """One conv as a block of kind "conv" (a stem, a head)."""
        with self.as_block(name, "conv", kernel=kernel, stride=stride, act=kw.get("act")):
            return self.conv(name, out, kernel, stride, **kw)

    def pool_head(self, name: str = "global_pool") -> str:
        with self.as_block(name, "global_avgpool"):
            return self.global_avgpool(name)

    def linear_head(self, name: str, classes: int = 1000) -> str:
        with self.as_block(name, "linear"):
            return self.linear(name, classes)


# ----- families -------------------------------------------------------------------------------


def _resnet(b: _Builder, cfg: ResNetCfg) -> None:
    if cfg.stem:
        w = cfg.stem_width
        chs = (3 * (w // 4), w) if cfg.stem == "deep_tiered" else (w, w)
        inplanes = 2 * w
        with b.as_block("conv1", "deep_stem", width=inplanes, kernel=3, stride=2, act="relu"):
            b.conv("conv1.0", chs[0], 3, 2, act="relu", src=None)
            b.conv("conv1.3", chs[1], 3, act="relu")
            b.conv("conv1.6", inplanes, 3, act="relu")
    else:
        inplanes = 64
        b.conv_block("conv1", 64, 7, 2, act="relu", src=None)
    with b.as_block("maxpool", "maxpool", kernel=3, stride=2):
        b.pool("maxpool", "maxpool", 3, 2)
    bottleneck = cfg.block == "bottleneck"
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), cfg.layers, strict=True)):
        out = planes * 4 if bottleneck else planes
        width = int(planes * cfg.base_width / 64) * cfg.cardinality if bottleneck else planes
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            down = j == 0 and (stride != 1 or inplanes != out)
            name = f"layer{i + 1}.{j}"
            attrs = dict(mid=width, stride=stride, groups=cfg.cardinality, se=False, act="relu")
            downsample = ("avg" if cfg.avg_down else "conv") if down else "none"
            with b.as_block(name, cfg.block, downsample=downsample, **attrs):
                x = b.last
                if bottleneck:
                    b.conv(f"{name}.conv1", width, act="relu")
                    b.conv(f"{name}.conv2", width, 3, stride, groups=cfg.cardinality, act="relu")
                    main = b.conv(f"{name}.conv3", out)
                else:
                    b.conv(f"{name}.conv1", width, 3, stride, act="relu")
                    main = b.conv(f"{name}.conv2", out, 3)
                shortcut = x
                if down and cfg.avg_down:
                    src = x
                    if stride != 1:
                        src = b.pool_exact(f"{name}.downsample.0", "avgpool", 2, 2, True, src=x)
                    shortcut = b.conv(f"{name}.downsample.1", out, src=src)
                elif down:
                    shortcut = b.conv(f"{name}.downsample.0", out, 1, stride, src=x)
                b.add(f"{name}.add", main, shortcut)
                b.act(f"{name}.act", "relu")
            inplanes = out
    b.pool_head()
    b.linear_head("fc")


def _mbnet(b: _Builder, cfg: MBNetCfg) -> None:
    def rc(c: float) -> int:
        return _round_channels(c, cfg.width)

    stem = cfg.stem if cfg.fix_stem else rc(cfg.stem)
    b.conv_block("conv_stem", stem, 3, 2, act=cfg.act, src=None)
    in_ch = stem
    last = len(cfg.stages) - 1
    for si, stage in enumerate(cfg.stages):
        fixed = cfg.fix_first_last and si in (0, last)
        blocks = _scaled_stage(stage, 1.0 if fixed else cfg.depth, cfg.depth_trunc)
        for bi, blk in enumerate(blocks):
            stride = blk.stride if bi == 0 else 1  # only a stage's first block strides
            out = rc(blk.out)
            _mb_block(b, cfg, f"blocks.{si}.{bi}", blk, in_ch, out, stride, rc)
            in_ch = out
    if cfg.head_after_pool:
        b.pool_head()
        b.conv_block("conv_head", cfg.head, 1, bias=True, bn=False, act=cfg.act)
    else:
        b.conv_block("conv_head", cfg.head, 1, act=cfg.act)
        b.pool_head()
    b.linear_head("classifier")


def _mb_block(
    b: _Builder,
    cfg: MBNetCfg,
    name: str,
    blk: B,
    in_ch: int,
    out: int,
    stride: int,
    rc: Callable[[float], int],
) -> None:
    act = blk.act or cfg.act
    k = blk.kernel
    if blk.kind == "cn":
        b.conv_block(name, out, k, stride, act=act)
        return
    separable = blk.kind in ("ds", "dsa")
    if separable:
        mid, expand = in_ch, 1.0
        skip = blk.kind == "ds" and stride == 1 and in_ch == out and not blk.noskip
    else:
        mid = make_divisible((rc(blk.force_in) if blk.force_in else in_ch) * blk.expand)
        expand = blk.expand
        skip = stride == 1 and in_ch == out and not blk.noskip
    se_width = 0
    if blk.se:
        ratio = blk.se if cfg.se_from_exp else blk.se / expand
        se_width = make_divisible(mid * ratio) if cfg.se_divisible else round(mid * ratio)
    kind = {"ds": "dsconv", "dsa": "dsconv", "ir": "mbconv", "er": "edge_residual"}[blk.kind]
    attrs = dict(mid=mid, kernel=k, stride=stride, expand=expand, skip=skip, se=se_width > 0)
    with b.as_block(name, kind, act=act, **attrs):
        x = b.last
        if separable:
            b.conv(f"{name}.conv_dw", mid, k, stride, groups=mid, act=act)
        elif blk.kind == "er":
            b.conv(f"{name}.conv_exp", mid, k, stride, act=act)
        else:
            b.conv(f"{name}.conv_pw", mid, act=act)
            b.conv(f"{name}.conv_dw", mid, k, stride, groups=mid, act=act)
        if se_width:
            b.se(f"{name}.se", se_width, cfg.se_act or act, cfg.se_gate)
        if separable:
            proj = b.conv(f"{name}.conv_pw", out, act=act if blk.kind == "dsa" else None)
        else:
            proj = b.conv(f"{name}.conv_pwl", out)
        if skip:
            b.add(f"{name}.add", proj, x)


def _regnet(b: _Builder, cfg: RegNetCfg) -> None:
    b.conv_block("stem", cfg.stem, 3, 2, act="relu", src=None)
    in_ch = cfg.stem
    for si, (width, depth, gs) in enumerate(regnet_stages(cfg)):
        for j in range(depth):
            stride = 2 if j == 0 else 1
            name = f"s{si + 1}.b{j + 1}"
            down = in_ch != width or stride != 1
            se_width = round(in_ch * cfg.se)
            attrs = dict(mid=width, stride=stride, groups=width // gs, se=se_width > 0)
            with b.as_block(name, "bottleneck", downsample="conv" if down else "none", **attrs):
                x = b.last
                b.conv(f"{name}.conv1", width, act="relu")
                b.conv(f"{name}.conv2", width, 3, stride, groups=width // gs, act="relu")
                if se_width:
                    b.se(f"{name}.se", se_width, "relu", "sigmoid")
                main = b.conv(f"{name}.conv3", width)
                shortcut = b.conv(f"{name}.downsample", width, 1, stride, src=x) if down else x
                b.add(f"{name}.add", main, shortcut)
                b.act(f"{name}.act", "relu")
            in_ch = width
    b.pool_head("head.global_pool")
    b.linear_head("head.fc")


def _vgg(b: _Builder, cfg: VGGCfg) -> None:
    for i, v in enumerate(cfg.convs):
        name = f"features.{i}"
        if v == "M":
            with b.as_block(name, "maxpool", kernel=2, stride=2):
                b.pool_exact(name, "maxpool", 2, 2)
        else:
            src = None if i == 0 else ""
            b.conv_block(name, int(v), 3, bias=True, bn=cfg.bn, act="relu", src=src)
    size = min(b.shape(b.last)[1:])
    if size < 7:
        raise SpecError(
            f"VGG's 7x7 pre_logits conv needs a feature map of at least 7x7, got {size}x{size}: "
            "the resolution must be at least 224"
        )
    with b.as_block("pre_logits.fc1", "conv", kernel=7, stride=1, act="relu"):
        b.conv_valid("pre_logits.fc1", 4096, 7, act="relu")
    b.conv_block("pre_logits.fc2", 4096, 1, bias=True, bn=False, act="relu")
    b.pool_head("head.global_pool")
    b.linear_head("head.fc")


_BUILDERS: dict[type, Callable[[_Builder, Any], None]] = {
    ResNetCfg: _resnet,
    MBNetCfg: _mbnet,
    RegNetCfg: _regnet,
    VGGCfg: _vgg,
}


# ----- the named networks ---------------------------------------------------------------------


def _stages(*stages: B | tuple[B, ...]) -> tuple[tuple[B, ...], ...]:
    return tuple((s,) if isinstance(s, B) else s for s in stages)


_EFFNET = _stages(
    B("ds", 1, 3, 1, 16, se=0.25),
    B("ir", 2, 3, 2, 24, 6, se=0.25),
    B("ir", 2, 5, 2, 40, 6, se=0.25),
    B("ir", 3, 3, 2, 80, 6, se=0.25),
    B("ir", 3, 5, 1, 112, 6, se=0.25),
    B("ir", 4, 5, 2, 192, 6, se=0.25),
    B("ir", 1, 3, 1, 320, 6, se=0.25),
)
_LITE = tuple(tuple(blk._replace(se=0.0) for blk in stage) for stage in _EFFNET)
_EDGE = _stages(
    B("er", 1, 3, 1, 24, 4, noskip=True, force_in=24),
    B("er", 2, 3, 2, 32, 8),
    B("er", 4, 3, 2, 48, 8),
    B("ir", 5, 5, 2, 96, 8),
    B("ir", 4, 5, 1, 144, 8),
    B("ir", 2, 5, 2, 192, 8),
)
_MBV2 = _stages(
    B("ds", 1, 3, 1, 16),
    B("ir", 2, 3, 2, 24, 6),
    B("ir", 3, 3, 2, 32, 6),
    B("ir", 4, 3, 2, 64, 6),
    B("ir", 3, 3, 1, 96, 6),
    B("ir", 3, 3, 2, 160, 6),
    B("ir", 1, 3, 1, 320, 6),
)
_MNASNET_B1 = _stages(
    B("ds", 1, 3, 1, 16, noskip=True),
    B("ir", 3, 3, 2, 24, 3),
    B("ir", 3, 5, 2, 40, 3),
    B("ir", 3, 5, 2, 80, 6),
    B("ir", 2, 3, 1, 96, 6),
    B("ir", 4, 5, 2, 192, 6),
    B("ir", 1, 3, 1, 320, 6, noskip=True),
)
_MNASNET_A1 = _stages(
    B("ds", 1, 3, 1, 16, noskip=True),
    B("ir", 2, 3, 2, 24, 6),
    B("ir", 3, 5, 2, 40, 3, se=0.25),
    B("ir", 4, 3, 2, 80, 6),
    B("ir", 2, 3, 1, 112, 6, se=0.25),
    B("ir", 3, 5, 2, 160, 6, se=0.25),
    B("ir", 1, 3, 1, 320, 6),
)
_MNASNET_SMALL = _stages(
    B("ds", 1, 3, 1, 8),
    B("ir", 1, 3, 2, 16, 3),
    B("ir", 2, 3, 2, 16, 6),
    B("ir", 4, 5, 2, 32, 6, se=0.25),
    B("ir", 3, 3, 1, 32, 6, se=0.25),
    B("ir", 3, 5, 2, 88, 6, se=0.25),
    B("ir", 1, 3, 1, 144, 6),
)
_SPNASNET = _stages(
    B("ds", 1, 3, 1, 16, noskip=True),
    B("ir", 3, 3, 2, 24, 3),
    (B("ir", 1, 5, 2, 40, 6), B("ir", 3, 3, 1, 40, 3)),
    (B("ir", 1, 5, 2, 80, 6), B("ir", 3, 3, 1, 80, 3)),
    (B("ir", 1, 5, 1, 96, 6), B("ir", 3, 5, 1, 96, 3)),
    B("ir", 4, 5, 2, 192, 6),
    B("ir", 1, 3, 1, 320, 6, noskip=True),
)
_FBNETC = _stages(
    B("ir", 1, 3, 1, 16, 1),
    (B("ir", 1, 3, 2, 24, 6), B("ir", 2, 3, 1, 24, 1)),
    (B("ir", 1, 5, 2, 32, 6), B("ir", 1, 5, 1, 32, 3), B("ir", 1, 5, 1, 32, 6),
     B("ir", 1, 3, 1, 32, 6)),
    (B("ir", 1, 5, 2, 64, 6), B("ir", 1, 5, 1, 64, 3), B("ir", 2, 5, 1, 64, 6)),
    (B("ir", 3, 5, 1, 112, 6), B("ir", 1, 5, 1, 112, 3)),
    B("ir", 4, 5, 2, 184, 6),
    B("ir", 1, 3, 1, 352, 6),
)  # fmt: skip
_MBV3_LARGE = _stages(
    B("ds", 1, 3, 1, 16, act="relu"),
    (B("ir", 1, 3, 2, 24, 4, act="relu"), B("ir", 1, 3, 1, 24, 3, act="relu")),
    B("ir", 3, 5, 2, 40, 3, se=0.25, act="relu"),
    (B("ir", 1, 3, 2, 80, 6), B("ir", 1, 3, 1, 80, 2.5), B("ir", 2, 3, 1, 80, 2.3)),
    B("ir", 2, 3, 1, 112, 6, se=0.25),
    B("ir", 3, 5, 2, 160, 6, se=0.25),
    B("cn", 1, 1, 1, 960),
)
_MBV3_SMALL = _stages(
    B("ds", 1, 3, 2, 16, se=0.25, act="relu"),
    (B("ir", 1, 3, 2, 24, 4.5, act="relu"), B("ir", 1, 3, 1, 24, 3.67, act="relu")),
    (B("ir", 1, 5, 2, 40, 4, se=0.25), B("ir", 2, 5, 1, 40, 6, se=0.25)),
    B("ir", 2, 5, 1, 48, 3, se=0.25),
    B("ir", 3, 5, 2, 96, 6, se=0.25),
    B("cn", 1, 1, 1, 576),
)


def _minimal(stages: tuple[tuple[B, ...], ...]) -> tuple[tuple[B, ...], ...]:
    """MobileNetV3 'minimal': ReLU everywhere, no SE, 3x3 kernels."""
    return tuple(
        tuple(blk._replace(se=0.0, act=None, kernel=min(blk.kernel, 3)) for blk in stage)
        for stage in stages
    )


_LCNET = _stages(
    B("dsa", 1, 3, 1, 32),
    B("dsa", 2, 3, 2, 64),
    B("dsa", 2, 3, 2, 128),
    (B("dsa", 1, 3, 2, 256), B("dsa", 1, 5, 1, 256)),
    B("dsa", 4, 5, 1, 256),
    B("dsa", 2, 5, 2, 512, se=0.25),
)


def _mbv3(stages: tuple[tuple[B, ...], ...], width: float = 1.0, **kw: Any) -> MBNetCfg:
    """timm's MobileNetV3 class (also LCNet): 16-wide stem, pool before a 1x1 head conv,
    SE with a ReLU and a hard-sigmoid gate on the expanded width."""
    base = dict(stem=16, head_after_pool=True, act="h_swish", se_gate="h_sigmoid", se_act="relu")
    return MBNetCfg(stages, width, **{**base, "se_from_exp": True, **kw})


_VGG = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}  # fmt: skip
# RegNet design-space parameters (w0, wa, wm, group size, depth), as the paper and timm list them
_REGNETX = {
    "002": (24, 36.44, 2.49, 8, 13),
    "004": (24, 24.48, 2.54, 16, 22),
    "006": (48, 36.97, 2.24, 24, 16),
    "008": (56, 35.73, 2.28, 16, 16),
    "016": (80, 34.01, 2.25, 24, 18),
    "032": (88, 26.31, 2.25, 48, 25),
    "040": (96, 38.65, 2.43, 40, 23),
    "064": (184, 60.83, 2.07, 56, 17),
    "080": (80, 49.56, 2.88, 120, 23),
    "120": (168, 73.36, 2.37, 112, 19),
    "160": (216, 55.59, 2.1, 128, 22),
    "320": (320, 69.86, 2.0, 168, 23),
}
_REGNETY = {
    "002": (24, 36.44, 2.49, 8, 13),
    "004": (48, 27.89, 2.09, 8, 16),
    "006": (48, 32.54, 2.32, 16, 15),
    "008": (56, 38.84, 2.4, 16, 14),
    "016": (48, 20.71, 2.65, 24, 27),
    "032": (80, 42.63, 2.66, 24, 21),
    "040": (96, 31.41, 2.24, 64, 22),
    "064": (112, 33.22, 2.27, 72, 25),
    "080": (192, 76.82, 2.19, 56, 17),
    "120": (168, 73.36, 2.37, 112, 19),
    "160": (200, 106.23, 2.48, 112, 18),
    "320": (232, 115.89, 2.53, 232, 20),
}
# ResNet variants: stem, stem width, average-pool downsample
_RESNET_VARIANTS = {
    "": ("", 64, False),
    "c": ("deep", 32, False),
    "d": ("deep", 32, True),
    "s": ("deep", 64, False),
    "t": ("deep_tiered", 32, True),
}
_RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    26: ("bottleneck", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _families() -> dict[str, FamilyNet]:
    nets: list[FamilyNet] = []

    def add(name: str, family: str, resolution: int, cfg: Cfg, ref: str) -> None:
        nets.append(FamilyNet(name, family, resolution, f"{ref}; {_TIMM}", cfg))

    resnet_res = {"resnet101d": 256, "resnet152d": 256, "resnet26t": 256}
    resnets = [
        "resnet18", "resnet34", "resnet26", "resnet50", "resnet101", "resnet152",
        "resnet18d", "resnet34d", "resnet26d", "resnet50d", "resnet101d", "resnet152d",
        "resnet50c", "resnet101c", "resnet152c", "resnet50s", "resnet101s", "resnet152s",
        "resnet26t", "resnet50t",
    ]  # fmt: skip
    for name in resnets:
        depth = int(name[6:].rstrip("cdst"))
        block, layers = _RESNET_DEPTHS[depth]
        stem, width, avg = _RESNET_VARIANTS[name[6 + len(str(depth)) :]]
        cfg = ResNetCfg(block, layers, stem, width, avg)
        add(name, "resnet", resnet_res.get(name, 224), cfg, "ResNet (He et al. 2016), v1.5")
    for name, card, base, variant, depth in (
        ("resnext50_32x4d", 32, 4, "", 50),
        ("resnext50d_32x4d", 32, 4, "d", 50),
        ("resnext101_32x4d", 32, 4, "", 101),
        ("resnext101_32x8d", 32, 8, "", 101),
        ("resnext101_64x4d", 64, 4, "", 101),
        ("wide_resnet50_2", 1, 128, "", 50),
        ("wide_resnet101_2", 1, 128, "", 101),
    ):
        stem, width, avg = _RESNET_VARIANTS[variant]
        cfg = ResNetCfg("bottleneck", _RESNET_DEPTHS[depth][1], stem, width, avg, card, base)
        ref = "ResNeXt (Xie et al. 2017)" if card > 1 else "Wide ResNet (Zagoruyko 2016)"
        add(name, "resnext" if card > 1 else "wide_resnet", 224, cfg, ref)

    for w in ("035", "050", "075", "100", "140"):
        m = int(w) / 100
        cfg = MBNetCfg(_MBV2, width=m, head=max(1280, _round_channels(1280, m)), act="relu6")
        add(f"mobilenetv2_{w}", "mobilenetv2", 224, cfg, "MobileNetV2 (Sandler et al. 2018)")
    for name, m, d in (("mobilenetv2_110d", 1.1, 1.2), ("mobilenetv2_120d", 1.2, 1.4)):
        cfg = MBNetCfg(_MBV2, m, d, fix_first_last=True, fix_stem=True, act="relu6")
        add(name, "mobilenetv2", 224, cfg, "MobileNetV2, width and depth scaled")

    for size, stages, head in (("large", _MBV3_LARGE, 1280), ("small", _MBV3_SMALL, 1024)):
        ref = "MobileNetV3 (Howard et al. 2019)"
        widths = ("075", "100") if size == "large" else ("050", "075", "100")
        for w in widths:
            m = int(w) / 100
            cfg = _mbv3(stages, m, head=head, fix_stem=m < 0.75, se_divisible=True)
            add(f"mobilenetv3_{size}_{w}", "mobilenetv3", 224, cfg, ref)
            if w != "050":
                add(f"tf_mobilenetv3_{size}_{w}", "mobilenetv3", 224, cfg, f"{ref}, TF port")
        minimal = _mbv3(_minimal(stages), head=head, act="relu")
        add(f"tf_mobilenetv3_{size}_minimal_100", "mobilenetv3", 224, minimal, f"{ref}, minimal")

    # variant: width, depth, timm's default resolution, the TF port's (the paper's) resolution
    effnets = {"b0": (1.0, 1.0, 224, 224), "b1": (1.0, 1.1, 240, 240),
               "b2": (1.1, 1.2, 256, 260), "b3": (1.2, 1.4, 288, 300),
               "b4": (1.4, 1.8, 320, 380), "b5": (1.6, 2.2, 448, 456),
               "b6": (1.8, 2.6, 528, 528), "b7": (2.0, 3.1, 600, 600)}  # fmt: skip
    for v, (m, d, res, tf_res) in effnets.items():
        cfg = MBNetCfg(_EFFNET, m, d, head=_round_channels(1280, m), act="swish")
        ref = "EfficientNet (Tan & Le 2019)"
        add(f"efficientnet_{v}", "efficientnet", res, cfg, ref)
        add(f"tf_efficientnet_{v}", "efficientnet", tf_res, cfg, f"{ref}, TF port")
    lites = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260),
             "lite3": (1.2, 1.4, 300), "lite4": (1.4, 1.8, 380)}  # fmt: skip
    for v, (m, d, res) in lites.items():
        cfg = MBNetCfg(_LITE, m, d, fix_first_last=True, fix_stem=True, act="relu6")
        ref = "EfficientNet-Lite (no SE, ReLU6, fixed stem and head)"
        add(f"efficientnet_{v}", "efficientnet_lite", res, cfg, ref)
        add(f"tf_efficientnet_{v}", "efficientnet_lite", res, cfg, f"{ref}, TF port")
    for v, (m, d, res) in {"es": (1.0, 1.0, 224), "em": (1.0, 1.1, 240),
                           "el": (1.2, 1.4, 300)}.items():  # fmt: skip
        cfg = MBNetCfg(_EDGE, m, d, head=_round_channels(1280, m))
        ref = "EfficientNet-EdgeTPU (Gupta & Tan 2019)"
        add(f"efficientnet_{v}", "efficientnet_edge", res, cfg, ref)
        add(f"tf_efficientnet_{v}", "efficientnet_edge", res, cfg, f"{ref}, TF port")
    for v, (m, d, res) in {"a": (1.0, 1.2, 192), "b": (0.75, 1.1, 188), "c": (0.54, 0.85, 184),
                           "d": (0.54, 0.695, 152), "e": (0.51, 0.6, 106)}.items():  # fmt: skip
        head = max(1280, _round_channels(1280, m))
        cfg = MBNetCfg(_EFFNET, m, d, "round", fix_stem=True, head=head, act="swish")
        add(f"tinynet_{v}", "tinynet", res, cfg, "TinyNet (Han et al. 2020)")

    for w in ("050", "075", "100", "140"):
        m = int(w) / 100
        add(f"mnasnet_{w}", "mnasnet", 224, MBNetCfg(_MNASNET_B1, m), "MnasNet-B1 (Tan 2019)")
        cfg = MBNetCfg(_MNASNET_A1, m)
        add(f"semnasnet_{w}", "mnasnet", 224, cfg, "MnasNet-A1 (with SE) (Tan et al. 2019)")
    add("mnasnet_small", "mnasnet", 224, MBNetCfg(_MNASNET_SMALL, stem=8), "MnasNet-small")
    add("spnasnet_100", "spnasnet", 224, MBNetCfg(_SPNASNET), "Single-Path NAS (Stamoulis 2019)")
    cfg = MBNetCfg(_FBNETC, stem=16, head=1984)
    add("fbnetc_100", "fbnet", 224, cfg, "FBNet-C (Wu et al. 2019)")

    for w in ("035", "050", "075", "100", "150"):
        cfg = _mbv3(_LCNET, int(w) / 100)
        add(f"lcnet_{w}", "lcnet", 224, cfg, "PP-LCNet (Cui et al. 2021)")

    for kind, table in (("x", _REGNETX), ("y", _REGNETY)):
        for size, (w0, wa, wm, gs, depth) in table.items():
            cfg = RegNetCfg(w0, wa, wm, gs, depth, se=0.25 if kind == "y" else 0.0)
            add(f"regnet{kind}_{size}", f"regnet{kind}", 224, cfg, "RegNet (Radosavovic 2020)")

    for depth, convs in _VGG.items():
        for bn in (False, True):
            name = f"vgg{depth}{'_bn' if bn else ''}"
            add(name, "vgg", 224, VGGCfg(convs, bn), "VGG (Simonyan & Zisserman 2015)")
    return {net.name: net for net in nets}


FAMILIES: dict[str, FamilyNet] = _families()


def family_spec(name: str, resolution: int | None = None, batch: int = 1) -> NetworkSpec:
    """The named network (timm's name, see `FAMILIES`) at `resolution` (default: timm's
    default input size) as a NetworkSpec for batches of `batch` images."""
    try:
        net = FAMILIES[name]
    except KeyError:
        raise UnknownNetworkError(name, FAMILIES) from None
    r = net.resolution if resolution is None else int(resolution)
    if r < 32:
        raise SpecError(f"resolution must be at least 32, got {r}")
    b = _Builder((3, r, r), name=name, batch=batch)
    _BUILDERS[type(net.cfg)](b, net.cfg)
    return b.build()


def fvcore_macs(spec: NetworkSpec) -> int:
    """MACs as fvcore counts them, the counter of timm's benchmark column `infer_gmacs`:
    convolutions and linear layers, plus 2 per BatchNorm output element, plus 1 per input
    element of the network's final pool (an adaptive pool; an SE's pool is a mean, uncounted)."""
    heads = {block.name for block in spec.blocks if block.kind == "global_avgpool"}
    extra = 0
    for layer in spec.layers:
        if layer.bn:
            extra += 2 * layer.out_elements
        if layer.op == "global_avgpool" and layer.block in heads:
            c, h, w = layer.in_shape
            extra += c * h * w
    return spec.macs + extra
