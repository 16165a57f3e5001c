"""The arch-conditioned multi-resolution discriminator of Anycost GAN training.

It takes images at every output resolution and is conditioned on the sub-generator's arch:
an MLP of `space.encode(arch)` scales its channels (FiLM), as Anycost GAN's
generator-conditioned discriminator does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet.anycost.generator import EqualLinear, lrelu
from supernet.anycost.space import AnycostGANSpace


class EqualConv2d(nn.Module):
    """Conv2d with StyleGAN's equalized learning rate (weights scaled at run time), so that
    Adam's step sizes suit every layer of the discriminator alike."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)

    def forward(self, x: Tensor) -> Tensor:
        padding = self.weight.shape[-1] // 2
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=padding)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = lrelu(self.conv1(lrelu(self.conv0(x))))
        y = F.avg_pool2d(y, 2)
        return (y + F.avg_pool2d(self.skip(x), 2)) / math.sqrt(2.0)  # residual, as StyleGAN2


class ConditionalDiscriminator(nn.Module):
    """Multi-resolution discriminator conditioned on the sub-generator's arch.

    An image at resolution r enters through its own from-RGB layer at the level of r; every
    block's output channels are then scaled by (1 + gamma), gamma an MLP of the arch's
    encoding (initialised to zero, so training starts unconditioned).
    """

    def __init__(self, space: AnycostGANSpace, cond_hidden: int = 64) -> None:
        super().__init__()
        c = space.config
        self.widths = {int(k): v for k, v in c.widths.items()}
        self.resolutions = sorted(r for r in self.widths if r > 4)
        self.from_rgb = nn.ModuleDict(
            {str(r): EqualConv2d(c.image_channels, self.widths[r], 1) for r in self.resolutions}
        )
        self.blocks = nn.ModuleDict(
            {
                str(r): DiscriminatorBlock(self.widths[r], self.widths[r // 2])
                for r in self.resolutions
            }
        )
        self._gamma_slices: dict[int, tuple[int, int]] = {}
        start = 0
        for r in self.resolutions:
            self._gamma_slices[r] = (start, start + self.widths[r // 2])
            start += self.widths[r // 2]
        self.cond = nn.Sequential(
            nn.Linear(space.encoding_size, cond_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(cond_hidden, start),
        )
        nn.init.zeros_(self.cond[-1].weight)
        nn.init.zeros_(self.cond[-1].bias)
        top = self.widths[4]
        self.final_conv = EqualConv2d(top + 1, top, 3)
        self.final_linear = EqualLinear(top * 16, top)
        self.out = EqualLinear(top, 1)

    def forward(self, image: Tensor, arch_code: Tensor) -> Tensor:
        res = image.shape[-1]
        if str(res) not in self.from_rgb:
            raise ValueError(f"no from-RGB layer for {res}x{res} images; have {self.resolutions}")
        gammas = self.cond(arch_code.expand(image.shape[0], -1))
        x = lrelu(self.from_rgb[str(res)](image))
        while res > 4:
            x = self.blocks[str(res)](x)
            lo, hi = self._gamma_slices[res]
            x = x * (1.0 + gammas[:, lo:hi, None, None])
            res //= 2
        # minibatch standard deviation, one extra channel (StyleGAN): sees sample diversity
        std = x.std(dim=0, unbiased=False).mean().expand(x.shape[0], 1, 4, 4)
        x = lrelu(self.final_conv(torch.cat([x, std], dim=1)))
        return self.out(lrelu(self.final_linear(x.flatten(1)))).squeeze(1)
