"""Anycost GAN (Lin et al., CVPR 2021) on a StyleGAN2-style generator.

The generator: a mapping network (pixel norm, equalized-lr linear layers, leaky ReLU) turns
a latent z into a style w; a learned 4x4 constant goes through modulated 3x3 convolutions
with weight demodulation, per-pixel noise and leaky ReLU, doubling the resolution at the
first conv of each level; a ToRGB (modulated 1x1 conv) at every resolution adds its image
to the upsampled image so far (StyleGAN2's skip layout).

Modulation is applied to the activations (x * style, conv with the shared weight, then
* demodulation factor), which equals modulating the weights but needs no per-sample
weights: the same code trains, runs sliced, and exports to TorchScript and ONNX.

Elastic: every layer's output channels (a prefix slice, after importance sorting), and the
output resolution (generation stops at that resolution's ToRGB). The discriminator takes
images at every output resolution and is conditioned on the sub-generator's arch: an MLP
of `space.encode(arch)` scales its channels (FiLM), as Anycost GAN's generator-conditioned
discriminator does.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet.anycost.space import AnycostGANSpace
from supernet.space import Arch


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU times sqrt(2), which keeps the activations' scale (StyleGAN). A literal:
    TorchScript compiles this function and cannot read module globals."""
    return F.leaky_relu(x, 0.2) * 1.4142135623730951


class EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalized learning rate (weights scaled at run time)."""

    def __init__(
        self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def effective(self) -> tuple[Tensor, Tensor]:
        return self.weight * self.scale, self.bias * self.lr_mul

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.effective()
        return F.linear(x, weight, bias)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, layers: int) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_mul=0.01) for a, b in itertools.pairwise(dims)
        )

    def forward(self, z: Tensor) -> Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        for layer in self.layers:
            x = lrelu(layer(x))
        return x


class ElasticModulatedConv(nn.Module):
    """A modulated conv with elastic input and output channels (prefix slices)."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel: int,
        w_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_out, max_in, kernel, kernel))
        self.scale = 1.0 / math.sqrt(max_in * kernel * kernel)
        self.affine = EqualLinear(w_dim, max_in, bias_init=1.0)  # style starts at 1
        self.kernel, self.demodulate, self.upsample = kernel, demodulate, upsample

    def active_weight(self, in_channels: int, out_channels: int) -> Tensor:
        return self.weight[:out_channels, :in_channels] * self.scale

    def forward(self, x: Tensor, w: Tensor, out_channels: int) -> Tensor:
        weight = self.active_weight(x.shape[1], out_channels)
        style = self.affine(w)[:, : x.shape[1]]
        demod = demodulation_matrix(weight) if self.demodulate else None
        return modulated_conv(x, style, weight, demod, self.upsample)


def demodulation_matrix(weight: Tensor) -> Tensor:
    """Sum of squared taps, (out, in): the demodulation factor is rsqrt(style^2 @ this.T)."""
    return weight.pow(2).sum(dim=(2, 3))


def modulated_conv(
    x: Tensor, style: Tensor, weight: Tensor, demod: Tensor | None, upsample: bool
) -> Tensor:
    """x * style -> [2x upsample] -> conv(weight) -> [* demodulation]."""
    x = x * style[:, :, None, None]
    if upsample:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    out = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demod is not None:
        out = out * torch.rsqrt(style.pow(2) @ demod.t() + 1e-8)[:, :, None, None]
    return out


class StyledLayer(nn.Module):
    """Modulated conv + bias + per-pixel noise + leaky ReLU."""

    def __init__(
        self, max_in: int, max_out: int, w_dim: int, resolution: int, upsample: bool
    ) -> None:
        super().__init__()
        self.conv = ElasticModulatedConv(max_in, max_out, 3, w_dim, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(max_out))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        # fixed noise for deterministic generation (evaluation, export)
        self.register_buffer("const_noise", torch.randn(1, 1, resolution, resolution))
        self.resolution = resolution

    def forward(self, x: Tensor, w: Tensor, out_channels: int, random_noise: bool) -> Tensor:
        out = self.conv(x, w, out_channels)
        if random_noise:
            noise = torch.randn(out.shape[0], 1, out.shape[2], out.shape[3], device=out.device)
        else:
            noise = self.const_noise
        out = out + self.noise_strength * noise + self.bias[:out_channels, None, None]
        return lrelu(out)


class ToRGB(nn.Module):
    def __init__(self, max_in: int, image_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ElasticModulatedConv(max_in, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None) -> Tensor:
        out = self.conv(x, w, self.bias.shape[0]) + self.bias[:, None, None]
        if skip is not None:
            out = out + F.interpolate(skip, scale_factor=2.0, mode="bilinear", align_corners=False)
        return out


class AnycostGenerator(nn.Module):
    """`set_active(arch)`, then `generator(z)` -> images at the arch's resolution."""

    def __init__(self, space: AnycostGANSpace) -> None:
        super().__init__()
        self.space = space
        c = space.config
        self.mapping = MappingNetwork(c.z_dim, c.w_dim, c.mapping_layers)
        self.const = nn.Parameter(torch.randn(1, c.widths[4], 4, 4))
        layers, rgbs = [], {}
        in_ch = c.widths[4]
        for i, layer in enumerate(space.layers):
            out_ch = c.widths[layer.resolution]
            layers.append(StyledLayer(in_ch, out_ch, c.w_dim, layer.resolution, layer.upsample))
            in_ch = out_ch
            if space.ends_resolution[i]:
                rgbs[str(layer.resolution)] = ToRGB(out_ch, c.image_channels, c.w_dim)
        self.layers = nn.ModuleList(layers)
        self.to_rgbs = nn.ModuleDict(rgbs)
        self.active_arch: Arch = {}
        self.set_active(space.largest())

    def set_active(self, arch: Arch) -> None:
        self.active_arch = self.space.canonical(arch)
        self._widths = self.space.channels(self.active_arch)

    def forward(self, z: Tensor, random_noise: bool = True) -> Tensor:
        w = self.mapping(z)
        x = self.const.expand(z.shape[0], -1, -1, -1)
        image: Tensor | None = None
        for i, (spec, layer) in enumerate(zip(self.space.layers, self.layers, strict=True)):
            if spec.resolution > self.active_arch["res"]:
                break
            x = layer(x, w, self._widths[i], random_noise)
            if self.space.ends_resolution[i]:
                image = self.to_rgbs[str(spec.resolution)](x, w, image)
        assert image is not None
        return image

    # ----- extraction -----------------------------------------------------------------------

    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> StaticGenerator:
        """The sub-generator as a standalone module with fixed noise: latent -> image.
        Its outputs equal `forward(z, random_noise=False)` for that arch."""
        arch = self.space.canonical(arch or self.active_arch)
        widths = self.space.channels(arch)
        mapping = nn.ModuleList()
        for layer in self.mapping.layers:
            weight, bias = layer.effective()
            mapping.append(_linear(weight, bias))
        stages: list[StaticStage] = []
        convs: list[StaticStyledConv] = []
        in_ch = self.const.shape[1]
        for i, (spec, layer) in enumerate(zip(self.space.layers, self.layers, strict=True)):
            if spec.resolution > arch["res"]:
                break
            out_ch = widths[i]
            weight, bias = layer.conv.affine.effective()
            convs.append(
                StaticStyledConv(
                    _linear(weight[:in_ch], bias[:in_ch]),
                    layer.conv.active_weight(in_ch, out_ch),
                    layer.bias[:out_ch],
                    layer.noise_strength,
                    layer.const_noise,
                    spec.upsample,
                )
            )
            in_ch = out_ch
            if self.space.ends_resolution[i]:
                rgb = self.to_rgbs[str(spec.resolution)]
                weight, bias = rgb.conv.affine.effective()
                to_rgb = StaticToRGB(
                    _linear(weight[:in_ch], bias[:in_ch]),
                    rgb.conv.active_weight(in_ch, rgb.bias.shape[0]),
                    rgb.bias,
                    skip=bool(stages),
                )
                stages.append(StaticStage(convs, to_rgb))
                convs = []
        return StaticGenerator(mapping, self.const, stages, self.space.name, arch)

    # ----- channel sorting ------------------------------------------------------------------

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder every layer's output channels by importance (L1 norm of its weights),
        largest first, permuting everything that reads them: the function is unchanged.
        Anycost GAN sorts before elastic-channel training so that prefixes keep the most
        important channels."""
        for i, layer in enumerate(self.layers):
            importance = layer.conv.weight.abs().sum(dim=(1, 2, 3))
            order = torch.argsort(importance, descending=True, stable=True)
            layer.conv.weight.data = layer.conv.weight.data[order]
            layer.bias.data = layer.bias.data[order]
            readers = [self.layers[i + 1].conv] if i + 1 < len(self.layers) else []
            if self.space.ends_resolution[i]:
                readers.append(self.to_rgbs[str(self.space.layers[i].resolution)].conv)
            for conv in readers:  # their input columns, and the styles that scale them
                conv.weight.data = conv.weight.data[:, order]
                conv.affine.weight.data = conv.affine.weight.data[order]
                conv.affine.bias.data = conv.affine.bias.data[order]


def _linear(weight: Tensor, bias: Tensor) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


class StaticStyledConv(nn.Module):
    def __init__(
        self,
        affine: nn.Linear,
        weight: Tensor,
        bias: Tensor,
        noise_strength: Tensor,
        noise: Tensor,
        upsample: bool,
    ) -> None:
        super().__init__()
        self.affine = affine
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.noise_strength = nn.Parameter(noise_strength.detach().clone())
        self.register_buffer("noise", noise.detach().clone())
        # precomputed once (a deployment stores it): the values the supernet computes
        self.register_buffer("demod", demodulation_matrix(weight.detach()).clone())
        self.upsample = upsample

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        out = modulated_conv(x, self.affine(w), self.weight, self.demod, self.upsample)
        return lrelu(out + self.noise_strength * self.noise + self.bias[None, :, None, None])


class StaticToRGB(nn.Module):
    def __init__(self, affine: nn.Linear, weight: Tensor, bias: Tensor, skip: bool) -> None:
        super().__init__()
        self.affine = affine
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.skip = skip

    def forward(self, x: Tensor, w: Tensor, previous: Tensor) -> Tensor:
        out = modulated_conv(x, self.affine(w), self.weight, None, False)
        out = out + self.bias[None, :, None, None]
        if self.skip:
            up = F.interpolate(previous, scale_factor=2.0, mode="bilinear", align_corners=False)
            out = out + up
        return out


class StaticStage(nn.Module):
    """The convs of one resolution and its ToRGB."""

    def __init__(self, convs: list[StaticStyledConv], to_rgb: StaticToRGB) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.to_rgb = to_rgb

    def forward(self, h: Tensor, w: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        for conv in self.convs:
            h = conv(h, w)
        return h, self.to_rgb(h, w, image)


class StaticGenerator(nn.Module):
    """A sub-generator of plain modules and fixed noise: latent (N, z_dim) -> image."""

    def __init__(
        self,
        mapping: nn.ModuleList,
        const: Tensor,
        stages: list[StaticStage],
        space_name: str,
        arch: Arch,
    ) -> None:
        super().__init__()
        self.mapping = mapping
        self.const = nn.Parameter(const.detach().clone())
        self.stages = nn.ModuleList(stages)
        self.space_name, self.resolution = space_name, int(arch["res"])

    def forward(self, z: Tensor) -> Tensor:
        w = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        for linear in self.mapping:
            w = lrelu(linear(w))
        h = self.const.expand(z.shape[0], -1, -1, -1)
        image = torch.zeros(1)  # the first stage has no image to add to
        for stage in self.stages:
            h, image = stage(h, w, image)
        return image


# ----- the discriminator ------------------------------------------------------------------------
