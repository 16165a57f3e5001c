"""Published reference networks as NetworkSpecs, for calibrating and testing device models.

The MCUNet ImageNet models are TinyNAS-searched MobileNetV2-like networks. Their structure
(stem width, then per block: expand ratio, output channels, stride, kernel) is transcribed from
the model configs that MCUNet publishes with its model zoo (github.com/mit-han-lab/mcunet,
`mcunet-*_imagenet.json`): middle channels are round(in x expand), a block has a residual
when its stride is 1 and its widths match, there is no head convolution (the last block feeds
the pool and the classifier). `mbv2-w0.35` is MobileNetV2 at width 0.35 and resolution 144, as
in MCUNet's baselines (it is also an arch of the `mcu-mbv2` search space).
"""

from __future__ import annotations

from dataclasses import dataclass

from latency_models.errors import UnknownNetworkError
from latency_models.spec import NetworkSpec, SpecBuilder

Block = tuple[int, int, int, int]  # expand ratio, output channels, stride, kernel


@dataclass(frozen=True)
class ZooNet:
    name: str
    resolution: int
    stem: int
    blocks: tuple[Block, ...]
    head: int | None = None  # width of a final 1x1 conv before the pool, if any
    classes: int = 1000
    act: str = "relu6"
    reference: str = ""
    # blocks (by index) without a residual although their stride is 1 and their widths match
    no_skip: tuple[int, ...] = ()


_MCUNET = "MCUNet model zoo config (github.com/mit-han-lab/mcunet), TinyEngine-measured"
# The first model zoo, with the configs of the scaled baselines and the int4 models
# (github.com/mit-han-lab/tinyml, commit e899b1b, mcunet/assets/configs/<name>.json)
_TINYML = "MCUNet's first model zoo config (github.com/mit-han-lab/tinyml@e899b1b)"
# MobileNetV2 (Sandler et al. 2018): t, c, n, s per stage at width 1.0
_MBV2_1_0: tuple[Block, ...] = (
    (1, 16, 1, 3),
    (6, 24, 2, 3),
    (6, 24, 1, 3),
    (6, 32, 2, 3),
    (6, 32, 1, 3),
    (6, 32, 1, 3),
    (6, 64, 2, 3),
    (6, 64, 1, 3),
    (6, 64, 1, 3),
    (6, 64, 1, 3),
    (6, 96, 1, 3),
    (6, 96, 1, 3),
    (6, 96, 1, 3),
    (6, 160, 2, 3),
    (6, 160, 1, 3),
    (6, 160, 1, 3),
    (6, 320, 1, 3),
)
# MobileNetV2 at width 0.3 (channels rounded to multiples of 8), as in mbv2-w0.3-r80
_MBV2_0_3: tuple[Block, ...] = (
    (1, 8, 1, 3),
    (6, 8, 2, 3),
    (6, 8, 1, 3),
    (6, 16, 2, 3),
    (6, 16, 1, 3),
    (6, 16, 1, 3),
    (6, 24, 2, 3),
    (6, 24, 1, 3),
    (6, 24, 1, 3),
    (6, 24, 1, 3),
    (6, 32, 1, 3),
    (6, 32, 1, 3),
    (6, 32, 1, 3),
    (6, 48, 2, 3),
    (6, 48, 1, 3),
    (6, 48, 1, 3),
    (6, 96, 1, 3),
)
# ProxylessNAS (mobile) at width 0.3, as in proxyless-w0.3-r176 (its two zero blocks dropped)
_PROXYLESS_0_3: tuple[Block, ...] = (
    (1, 8, 1, 3),
    (3, 16, 2, 5),
    (3, 16, 1, 3),
    (3, 16, 2, 7),
    (3, 16, 1, 3),
    (3, 16, 1, 5),
    (3, 16, 1, 5),
    (6, 24, 2, 7),
    (3, 24, 1, 5),
    (3, 24, 1, 5),
    (3, 24, 1, 5),
    (6, 32, 1, 5),
    (3, 32, 1, 5),
    (3, 32, 1, 5),
    (3, 32, 1, 5),
    (6, 64, 2, 7),
    (6, 64, 1, 7),
    (3, 64, 1, 7),
    (3, 64, 1, 7),
    (6, 96, 1, 7),
)

ZOO: dict[str, ZooNet] = {
    "mcunet-in0": ZooNet(
        "mcunet-in0",
        48,
        24,
        (
            (1, 16, 1, 3),
            (4, 16, 2, 5),
            (3, 16, 1, 3),
            (4, 16, 1, 3),
            (5, 24, 2, 7),
            (4, 24, 1, 5),
            (5, 24, 1, 5),
            (5, 48, 2, 7),
            (4, 48, 1, 5),
            (5, 56, 1, 3),
            (4, 56, 1, 5),
            (5, 56, 1, 3),
            (6, 112, 2, 3),
            (4, 112, 1, 5),
            (6, 192, 1, 3),
        ),
        reference=f"mcunet-10fps_imagenet; {_MCUNET}",
    ),
    "mcunet-in1": ZooNet(
        "mcunet-in1",
        96,
        16,
        (
            (1, 8, 1, 3),
            (4, 16, 2, 3),
            (3, 16, 1, 3),
            (3, 24, 2, 7),
            (5, 24, 1, 3),
            (5, 40, 2, 3),
            (4, 40, 1, 7),
            (4, 48, 1, 5),
            (3, 48, 1, 3),
            (4, 48, 1, 3),
            (5, 96, 2, 7),
            (4, 96, 1, 5),
            (4, 96, 1, 5),
            (6, 160, 1, 3),
        ),
        reference=f"mcunet-5fps_imagenet; {_MCUNET}",
    ),
    "mcunet-in2": ZooNet(
        "mcunet-in2",
        160,
        16,
        (
            (1, 8, 1, 3),
            (3, 16, 2, 5),
            (6, 16, 1, 7),
            (5, 16, 1, 3),
            (5, 16, 1, 5),
            (5, 24, 2, 3),
            (6, 24, 1, 7),
            (6, 24, 1, 5),
            (4, 40, 2, 7),
            (5, 40, 1, 5),
            (5, 48, 1, 3),
            (5, 48, 1, 5),
            (4, 48, 1, 3),
            (6, 96, 2, 5),
            (4, 96, 1, 5),
            (3, 96, 1, 5),
            (4, 96, 1, 3),
            (5, 160, 1, 5),
        ),
        reference=f"mcunet-256kb-1mb_imagenet; {_MCUNET}",
    ),
    "mcunet-in3": ZooNet(
        "mcunet-in3",
        176,
        16,
        (
            (1, 8, 1, 3),
            (3, 16, 2, 7),
            (5, 16, 1, 3),
            (5, 16, 1, 7),
            (4, 16, 1, 5),
            (5, 24, 2, 5),
            (5, 24, 1, 5),
            (5, 24, 1, 5),
            (5, 40, 2, 3),
            (6, 40, 1, 7),
            (4, 40, 1, 5),
            (5, 48, 1, 5),
            (5, 48, 1, 7),
            (5, 48, 1, 3),
            (6, 96, 2, 3),
            (5, 96, 1, 7),
            (4, 96, 1, 3),
            (5, 160, 1, 7),
        ),
        reference=f"mcunet-320kb-1mb_imagenet; {_MCUNET}",
    ),
    "mcunet-in4": ZooNet(
        "mcunet-in4",
        160,
        32,
        (
            (1, 16, 1, 3),
            (3, 24, 2, 7),
            (5, 24, 1, 3),
            (4, 24, 1, 5),
            (5, 40, 2, 7),
            (4, 40, 1, 3),
            (4, 40, 1, 7),
            (3, 80, 2, 7),
            (3, 80, 1, 3),
            (3, 80, 1, 7),
            (4, 96, 1, 3),
            (3, 96, 1, 5),
            (3, 96, 1, 5),
            (4, 192, 2, 7),
            (3, 192, 1, 7),
            (3, 192, 1, 5),
            (4, 320, 1, 5),
        ),
        reference=f"mcunet-512kb-2mb_imagenet; {_MCUNET}",
    ),
    "mbv2-w0.35": ZooNet(
        "mbv2-w0.35",
        144,
        16,
        (
            (1, 8, 1, 3),
            (6, 8, 2, 3),
            (6, 8, 1, 3),
            (6, 16, 2, 3),
            (6, 16, 1, 3),
            (6, 16, 1, 3),
            (6, 24, 2, 3),
            (6, 24, 1, 3),
            (6, 24, 1, 3),
            (6, 24, 1, 3),
            (6, 32, 1, 3),
            (6, 32, 1, 3),
            (6, 32, 1, 3),
            (6, 56, 2, 3),
            (6, 56, 1, 3),
            (6, 56, 1, 3),
            (6, 112, 1, 3),
        ),
        head=448,
        reference="MobileNetV2 (Sandler et al. 2018), width 0.35, r=144, as in MCUNet's baselines",
    ),
    "mbv2-w1.0-r224": ZooNet(
        "mbv2-w1.0-r224",
        224,
        32,
        _MBV2_1_0,
        head=1280,
        reference="MobileNetV2 (Sandler et al. 2018), width 1.0, r=224: the network of MCUNetV2's "
        "Fig. 1 and Table 1 (Lin et al. 2021); also the arch {ks: 3, e: 6, d: [2,3,4,3,3,1], "
        "w: 1.0, r: 224} of the mcu-mbv2 space",
    ),
    "mbv2-w0.3-r80": ZooNet(
        "mbv2-w0.3-r80",
        80,
        16,
        _MBV2_0_3,
        head=384,
        reference=f"mbv2-w0.3-r80_imagenet; {_TINYML}",
    ),
    "mbv2-w0.3-r64": ZooNet(
        "mbv2-w0.3-r64",
        64,
        16,
        _MBV2_0_3,
        head=384,
        reference="TinyEngine README's mbv2-w0.3-r64 (github.com/mit-han-lab/tinyengine); its "
        "config is not published: assumed to be mbv2-w0.3-r80's at r=64",
    ),
    "proxyless-w0.3": ZooNet(
        "proxyless-w0.3",
        176,
        16,
        _PROXYLESS_0_3,
        head=384,
        reference=f"proxyless-w0.3-r176_imagenet; {_MCUNET}",
    ),
    "proxyless-w0.3-r64": ZooNet(
        "proxyless-w0.3-r64",
        64,
        16,
        _PROXYLESS_0_3,
        head=384,
        reference="TinyEngine README's proxyless-w0.3-r64 (github.com/mit-han-lab/tinyengine); "
        "its config is not published: assumed to be proxyless-w0.3-r176's at r=64",
    ),
    "proxyless-w0.25-r112": ZooNet(
        "proxyless-w0.25-r112",
        112,
        8,
        (
            (1, 8, 1, 3),
            (3, 8, 2, 5),
            (3, 8, 1, 3),
            (3, 16, 2, 7),
            (3, 16, 1, 3),
            (3, 16, 1, 5),
            (3, 16, 1, 5),
            (6, 24, 2, 7),
            (3, 24, 1, 5),
            (3, 24, 1, 5),
            (3, 24, 1, 5),
            (6, 24, 1, 5),
            (3, 24, 1, 5),
            (3, 24, 1, 5),
            (3, 24, 1, 5),
            (6, 48, 2, 7),
            (6, 48, 1, 7),
            (3, 48, 1, 7),
            (3, 48, 1, 7),
            (6, 80, 1, 7),
        ),
        head=320,
        no_skip=(0, 11),
        reference=f"proxyless-w0.25-r112_imagenet (its two zero blocks dropped); {_TINYML}",
    ),
    "mcunet-256kb-1mb-int4": ZooNet(
        "mcunet-256kb-1mb-int4",
        160,
        32,
        (
            (1, 16, 1, 3),
            (3, 24, 2, 7),
            (6, 24, 1, 3),
            (5, 24, 1, 5),
            (3, 24, 1, 7),
            (5, 40, 2, 7),
            (3, 40, 1, 5),
            (4, 40, 1, 7),
            (5, 72, 2, 3),
            (4, 72, 1, 7),
            (6, 88, 1, 5),
            (4, 88, 1, 5),
            (3, 88, 1, 7),
            (5, 176, 2, 3),
            (4, 176, 1, 5),
            (4, 288, 1, 5),
        ),
        reference=f"mcunet-256kb-1mb-int4_imagenet (int4 activations); {_TINYML}",
    ),
    "mcunet-320kb-1mb-int4": ZooNet(
        "mcunet-320kb-1mb-int4",
        176,
        32,
        (
            (1, 16, 1, 3),
            (3, 24, 2, 7),
            (6, 24, 1, 5),
            (6, 24, 1, 5),
            (4, 40, 2, 7),
            (4, 40, 1, 3),
            (4, 40, 1, 7),
            (4, 40, 1, 5),
            (4, 72, 2, 7),
            (6, 72, 1, 7),
            (4, 72, 1, 5),
            (3, 88, 1, 5),
            (3, 88, 1, 5),
            (4, 88, 1, 7),
            (5, 176, 2, 3),
            (3, 176, 1, 3),
            (4, 288, 1, 7),
        ),
        reference=f"mcunet-320kb-1mb-int4_imagenet (int4 activations); {_TINYML}",
    ),
    "mcunet-512kb-2mb-int4": ZooNet(
        "mcunet-512kb-2mb-int4",
        192,
        48,
        (
            (1, 24, 1, 3),
            (3, 40, 2, 7),
            (5, 40, 1, 3),
            (5, 40, 1, 3),
            (5, 40, 1, 3),
            (6, 64, 2, 5),
            (4, 64, 1, 7),
            (5, 64, 1, 5),
            (5, 120, 2, 7),
            (4, 120, 1, 7),
            (4, 120, 1, 3),
            (4, 144, 1, 5),
            (4, 144, 1, 3),
            (3, 144, 1, 7),
            (5, 288, 2, 3),
            (3, 288, 1, 7),
            (4, 480, 1, 5),
        ),
        reference=f"mcunet-512kb-2mb-int4_imagenet (int4 activations); {_TINYML}",
    ),
}


def zoo_spec(name: str, batch: int = 1) -> NetworkSpec:
    """The named reference network as a NetworkSpec (block kinds as `space.to_spec` emits)."""
    try:
        net = ZOO[name]
    except KeyError:
        raise UnknownNetworkError(name, ZOO) from None
    r = net.resolution
    b = SpecBuilder((3, r, r), name=name, batch=batch)
    b.begin_block("stem")
    b.conv("stem", net.stem, kernel=3, stride=2, act=net.act, src=None)
    b.end_block("conv", (3, r, r), kernel=3, stride=2, act=net.act)
    in_ch = net.stem
    for i, (expand, out, stride, kernel) in enumerate(net.blocks):
        name_i = f"blocks.{i}"
        block_input = b.last
        in_shape = b.shape(block_input)
        mid = in_ch if expand == 1 else round(in_ch * expand)
        residual = stride == 1 and in_ch == out and i not in net.no_skip
        b.begin_block(name_i)
        if expand != 1:
            b.conv(f"{name_i}.expand", mid, act=net.act)
        b.conv(f"{name_i}.depthwise", mid, kernel=kernel, stride=stride, groups=mid, act=net.act)
        project = b.conv(f"{name_i}.project", out)
        if residual:
            b.add(f"{name_i}.add", project, block_input)
        b.end_block(
            "mbconv",
            in_shape,
            mid=mid,
            kernel=kernel,
            stride=stride,
            expand=expand,
            skip=residual,
            se=False,
            act=net.act,
        )
        in_ch = out
    if net.head is not None:
        b.begin_block("final_expand")
        in_shape = b.shape(b.last)
        b.conv("final_expand", net.head, act=net.act)
        b.end_block("conv", in_shape, kernel=1, stride=1, act=net.act)
    b.begin_block("pool")
    in_shape = b.shape(b.last)
    b.global_avgpool("pool")
    b.end_block("global_avgpool", in_shape)
    b.begin_block("classifier")
    in_shape = b.shape(b.last)
    b.linear("classifier", net.classes)
    b.end_block("linear", in_shape)
    return b.build()


def reference_spec(name: str, resolution: int | None = None, batch: int = 1) -> NetworkSpec:
    """A published network by name: an MCU network of this zoo (at its own resolution), or a
    classic CNN of latency_models.families (timm's names; `resolution` default timm's)."""
    from latency_models.families import FAMILIES, family_spec

    if name in ZOO:
        if resolution is not None and resolution != ZOO[name].resolution:
            raise UnknownNetworkError(
                f"{name} at {resolution}", [f"{name} at {ZOO[name].resolution}"]
            )
        return zoo_spec(name, batch=batch)
    if name in FAMILIES:
        return family_spec(name, resolution=resolution, batch=batch)
    raise UnknownNetworkError(name, [*ZOO, *FAMILIES])
