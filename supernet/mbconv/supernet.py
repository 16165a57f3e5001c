"""The elastic MBConv supernet (once-for-all MobileNetV3 / MCUNet MobileNetV2) and its
extracted static subnets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet.mbconv.ops import (
    ConvBNAct,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
    ElasticMBConvBlock,
)
from supernet.mbconv.space import MBConvSpace, mid_channels
from supernet.space import Arch


class StaticMBConvNet(nn.Module):
    """A subnet made of plain torch modules; scriptable and exportable to ONNX.

    It expects inputs already at `resolution` (the supernet resizes; a deployed model
    is fed at its own resolution).
    """

    def __init__(
        self,
        stem: nn.Module,
        blocks: list[nn.Module],
        head: nn.Module,
        classifier: nn.Module,
        space_name: str,
        arch_json: str,
        resolution: int,
    ) -> None:
        super().__init__()
        self.stem, self.blocks, self.head, self.classifier = (
            stem,
            nn.Sequential(*blocks),
            head,
            classifier,
        )
        self.space_name, self.arch_json, self.resolution = space_name, arch_json, resolution

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(x, 1))


class MBConvSupernet(nn.Module):
    """All subnets of an MBConvSpace in one module: `set_active(arch)`, then call it."""

    def __init__(self, space: MBConvSpace) -> None:
        super().__init__()
        self.space = space
        c = space.config
        widths = space.widths()

        def bn(channels: int) -> ElasticBatchNorm2d:
            return ElasticBatchNorm2d(channels, eps=c.bn_eps, momentum=c.bn_momentum)

        self.stem = ConvBNAct(
            ElasticConv2d(c.in_channels, widths["stem"], 3, c.stem_stride),
            bn(widths["stem"]),
            c.stem_act,
        )
        self.first_block = ElasticMBConvBlock(
            widths["stem"],
            widths["first_block"],
            (3,),
            (1,),
            1,
            c.first_block_act,
            se=False,
            residual=space.first_block_residual,
        )
        blocks = []
        in_ch = widths["first_block"]
        for s, j in space.block_stage:
            stage = c.stages[s]
            out_ch = widths["stages"][s]
            blocks.append(
                ElasticMBConvBlock(
                    in_ch,
                    out_ch,
                    c.kernel_sizes,
                    c.expand_ratios,
                    stride=stage.stride if j == 0 else 1,
                    act=stage.act,
                    se=stage.se,
                    residual=space.block_has_residual(s, j),
                )
            )
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        head = widths["head"]
        self.final_expand = ConvBNAct(ElasticConv2d(in_ch, head[0]), bn(head[0]), c.head_act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # once-for-all's MobileNetV3 mixes features after pooling, without BatchNorm
        self.feature_mix = (
            ConvBNAct(ElasticConv2d(head[0], head[1]), None, c.head_act)
            if c.head == "mbv3"
            else None
        )
        self.classifier = ElasticLinear(head[-1], c.num_classes, c.dropout)
        # block index (0-based, elastic blocks) -> stage, for depth
        self.stage_blocks: list[list[int]] = [[] for _ in c.stages]
        for i, (s, _) in enumerate(space.block_stage):
            self.stage_blocks[s].append(i)
        self.active_arch: Arch = {}
        self.set_active(space.largest())

    # ----- active subnet --------------------------------------------------------------------

    def set_active(self, arch: Arch) -> None:
        """Make `arch` the network that forward() runs (raises InvalidArchError if foreign)."""
        arch = self.space.canonical(arch)
        widths = self.space.widths(self.space.width_mult(arch))
        self.stem.conv.active_out = widths["stem"]
        self.first_block.active_out = widths["first_block"]
        for i, block in enumerate(self.blocks):
            s, _ = self.space.block_stage[i]
            block.active_kernel, block.active_expand = arch["ks"][i], arch["e"][i]
            block.active_out = widths["stages"][s]
        self.final_expand.conv.active_out = widths["head"][0]
        if self.feature_mix is not None:
            self.feature_mix.conv.active_out = widths["head"][1]
        self.active_arch = arch

    def active_blocks(self) -> list[ElasticMBConvBlock]:
        depths = self.active_arch["d"]
        return [self.blocks[i] for s, ids in enumerate(self.stage_blocks) for i in ids[: depths[s]]]

    def forward(self, x: Tensor) -> Tensor:
        r = self.active_arch["r"]
        if x.shape[-2:] != (r, r):
            # elastic resolution: the data pipeline normally feeds r x r already
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        x = self.first_block(self.stem(x))
        for block in self.active_blocks():
            x = block(x)
        x = self.pool(self.final_expand(x))
        if self.feature_mix is not None:
            x = self.feature_mix(x)
        return self.classifier(torch.flatten(x, 1))

    def compile_static_parts(self) -> None:
        """torch.compile, in place (state_dict keys unchanged), the parts every subnet runs
        whole: the stem, the first block and the head. The elastic blocks change shape at
        every step and would only recompile."""
        for module in (self.stem, self.first_block, self.final_expand, self.feature_mix):
            if module is not None:
                module.compile(dynamic=True)

    # ----- extraction -----------------------------------------------------------------------

    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> StaticMBConvNet:
        """A standalone copy of the subnet `arch` (default: the active one).

        In eval mode its outputs equal the supernet's for that arch. The supernet's active
        arch is left as it was.
        """
        previous = self.active_arch
        if arch is not None:
            self.set_active(arch)
        try:
            arch = self.active_arch
            in_ch = self.space.config.in_channels
            stem = self.stem.extract(in_ch)
            in_ch = stem[0].out_channels
            blocks: list[nn.Module] = []
            for block in [self.first_block, *self.active_blocks()]:
                blocks.append(block.extract(in_ch))
                in_ch = block.active_out
            head: list[nn.Module] = [self.final_expand.extract(in_ch), nn.AdaptiveAvgPool2d(1)]
            in_ch = self.final_expand.conv.active_out
            if self.feature_mix is not None:
                head.append(self.feature_mix.extract(in_ch))
                in_ch = self.feature_mix.conv.active_out
            net = StaticMBConvNet(
                stem,
                blocks,
                nn.Sequential(*head),
                self.classifier.extract(in_ch),
                self.space.name,
                self.space.to_json(arch),
                arch["r"],
            )
        finally:
            self.set_active(previous)
        return net.train(self.training)

    # ----- channel sorting ------------------------------------------------------------------

    def sort_middle_channels(self, keep_expand_ratios: list[int] | tuple[int, ...] = ()) -> None:
        """Sort every elastic block's middle channels by importance (once-for-all's step
        before shrinking the expand ratio).

        `keep_expand_ratios`: ratios already trained; the channel prefixes they use, at every
        width multiplier, keep their members (sorting happens only inside the segments).
        """
        c = self.space.config
        for i, block in enumerate(self.blocks):
            s, j = self.space.block_stage[i]
            in_widths = {self.space.block_input_width(s, j, w) for w in c.width_mults}
            keep = [mid_channels(width, e) for width in in_widths for e in keep_expand_ratios]
            block.sort_middle_channels(keep)
