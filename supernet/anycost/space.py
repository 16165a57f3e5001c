"""The Anycost GAN space: sub-generators of one StyleGAN2-style generator.

An arch is {"ch": [one channel ratio per modulated conv layer], "res": output resolution}.
Layer i's output channels are round(full width of its resolution x ch[i]); generation stops at
the ToRGB of `res`, so the layers above `res` do not run: the canonical form sets their
ratios to the smallest choice, and equal sub-generators get equal ids.

A uniform config has one ratio everywhere; a flexible config mixes them per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latency_models import NetworkSpec, SpecBuilder
from supernet.space import Arch, ArchField, CanonicalArch, RngLike, SearchSpace, as_rng


@dataclass(frozen=True)
class GanLayer:
    name: str  # e.g. "16.conv0"
    resolution: int  # output resolution of the layer
    upsample: bool  # the first layer of each resolution above 4 doubles it


@dataclass(frozen=True)
class AnycostGANConfig:
    name: str
    image_channels: int
    image_size: int
    z_dim: int
    w_dim: int
    mapping_layers: int
    widths: Mapping[int, int]  # resolution -> full channels of its layers
    ratios: tuple[float, ...]
    resolutions: tuple[int, ...]  # output resolutions a sub-generator may stop at
    description: str = ""
    reference: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> tuple[GanLayer, ...]:
        """One conv at 4x4, then two per doubled resolution (StyleGAN2's layout)."""
        out = [GanLayer("4.conv", 4, False)]
        size = 8
        while size <= self.image_size:
            out += [GanLayer(f"{size}.conv0", size, True), GanLayer(f"{size}.conv1", size, False)]
            size *= 2
        return tuple(out)


class AnycostGANSpace(SearchSpace):
    def __init__(self, config: AnycostGANConfig) -> None:
        self.config = config
        self.name = config.name
        self.layers = config.layers
        self.num_layers = len(self.layers)
        self.resolution_gene = "res"
        # layer i is followed by a ToRGB when it is the last layer of its resolution
        self.ends_resolution = [
            i + 1 == self.num_layers or self.layers[i + 1].resolution != layer.resolution
            for i, layer in enumerate(self.layers)
        ]

    # ----- structure --------------------------------------------------------------------------

    def channels(self, arch: Arch) -> list[int]:
        """Output channels of every layer (inactive layers included, at their ratio)."""
        arch = arch if self.trusted(arch) else self.validate(arch)
        return [self.width(layer, r) for layer, r in zip(self.layers, arch["ch"], strict=True)]

    def width(self, layer: GanLayer, ratio: float) -> int:
        return max(1, round(self.config.widths[layer.resolution] * ratio))

    def active(self, arch: Arch, index: int) -> bool:
        return self.layers[index].resolution <= arch["res"]

    # ----- the arch layout ------------------------------------------------------------------

    def arch_fields(self) -> tuple[ArchField, ...]:
        c = self.config
        return (
            ArchField.many("ch", [c.ratios] * self.num_layers, kind="float", role="gated"),
            ArchField.one("res", c.resolutions, role="controls"),
        )

    def gene_active(self, arch: Arch, field: str, position: int) -> bool:
        return self.active(arch, position)

    # ----- sampling -------------------------------------------------------------------------
    # mutate and crossover are the generic ones (the same draws as before they were shared).

    def sample(self, rng: RngLike = None) -> CanonicalArch:
        """Half uniform configs (one ratio everywhere), half flexible per-layer configs.

        Kept here rather than the generic per-position draw: the uniform configs are the ones
        Anycost GAN trains and reports, and a seed must give the same archs as before.
        """
        rng = as_rng(rng)
        c = self.config
        if rng.random() < 0.5:
            ch = [self._pick(rng, c.ratios)] * self.num_layers
        else:
            ch = [self._pick(rng, c.ratios) for _ in range(self.num_layers)]
        return self.canonical({"ch": ch, "res": self._pick(rng, c.resolutions)})

    # ----- description and specs ------------------------------------------------------------

    def input_shape(self, arch: Arch, batch: int = 1) -> tuple[int, ...]:
        return (batch, self.config.z_dim)  # a latent vector per image

    def block_cover(self, resolutions: Sequence[int] | None = None) -> list[Arch]:
        """A layer's block depends on its own ratio and the previous layer's: alternating
        two ratios (both ways round) for every pair covers every combination, and the
        highest resolution holds the blocks of the lower ones."""
        res = max(resolutions or self.config.resolutions)
        ratios = self.config.ratios
        archs = []
        for a in ratios:
            for b in ratios:
                ch = [a if i % 2 == 0 else b for i in range(self.num_layers)]
                archs.append(self.canonical({"ch": ch, "res": res}))
        return archs

    def uniform(self, ratio: float, res: int | None = None) -> Arch:
        """The uniform config: every layer at `ratio`."""
        res = max(self.config.resolutions) if res is None else res
        return self.canonical({"ch": [ratio] * self.num_layers, "res": res})

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": self.name,
            "description": c.description,
            "reference": c.reference,
            "input": f"latent z of {c.z_dim} values",
            "output": f"{c.image_channels}x{c.image_size}x{c.image_size} image",
            "genes": self.describe_genes(),
            "layers": [layer.name for layer in self.layers],
            "widths": dict(c.widths),
            "size": self.size(),
        }

    def definition(self) -> dict[str, Any]:
        """Every field of the config as JSON-able data, choice lists sorted, widths by
        resolution (see supernet.anycost.definition for the schema and its checks)."""
        c = self.config
        return {
            "kind": "anycost_gan",
            "name": self.label,
            "description": c.description,
            "reference": c.reference,
            "image_channels": c.image_channels,
            "image_size": c.image_size,
            "z_dim": c.z_dim,
            "w_dim": c.w_dim,
            "mapping_layers": c.mapping_layers,
            "widths": {int(r): int(w) for r, w in sorted(c.widths.items())},
            "ratios": sorted({float(r) for r in c.ratios}),
            "resolutions": sorted({int(r) for r in c.resolutions}),
        }

    def to_spec(self, arch: Arch, batch: int = 1) -> NetworkSpec:
        """The sub-generator from latent to image, as the extracted generator computes it.

        A modulated conv is: style = linear(w); x * style; [2x bilinear upsample]; conv;
        * demodulation (a linear map of the style: sum over taps of the squared weights);
        then bias, noise and leaky ReLU (one elementwise op). ToRGB: style, x * style, 1x1
        conv with bias; the image is the sum of every ToRGB so far, upsampled (skip layout).
        """
        arch = self.canonical(arch)
        c = self.config
        b = SpecBuilder((c.z_dim, 1, 1), name=f"{self.name}:{self.arch_id(arch)}", batch=batch)
        b.begin_block("mapping")
        for i in range(c.mapping_layers):
            b.linear(f"mapping.{i}", c.w_dim, src=None if i == 0 else "")
            b.act(f"mapping.{i}.act", "lrelu")
        w = b.last
        b.end_block("mapping", (c.z_dim, 1, 1))

        x = b.const("const", (c.widths[4], 4, 4))
        rgb: str | None = None
        for i, (layer, ratio) in enumerate(zip(self.layers, arch["ch"], strict=True)):
            if layer.resolution > arch["res"]:
                break
            name = layer.name
            b.begin_block(name)
            in_shape = b.shape(x)
            style = b.linear(f"{name}.style", in_shape[0], src=w)
            x = b.mul(f"{name}.modulate", x, style)
            if layer.upsample:
                x = b.resize(f"{name}.upsample", layer.resolution, src=x)
            conv = b.conv(
                f"{name}.conv", self.width(layer, ratio), kernel=3, bias=True, bn=False, src=x
            )  # the bias is added after demodulation, with the noise
            # the demodulation matrix (sum of squared taps) is stored with the weights
            demod = b.linear(f"{name}.demod", self.width(layer, ratio), bias=False, src=style)
            x = b.mul(f"{name}.demodulate", conv, demod)
            x = b.act(f"{name}.act", "lrelu", src=x)  # + bias + noise, fused
            b.end_block("modulated_conv", in_shape, kernel=3, upsample=layer.upsample, ratio=ratio)
            if self.ends_resolution[i]:
                rgb = self._to_rgb(b, layer.resolution, x, w, rgb)
        return b.build()

    def _to_rgb(self, b: SpecBuilder, res: int, x: str, w: str, previous: str | None) -> str:
        name = f"{res}.to_rgb"
        b.begin_block(name)
        in_shape = b.shape(x)
        style = b.linear(f"{name}.style", in_shape[0], src=w)
        modulated = b.mul(f"{name}.modulate", x, style)
        out = b.conv(f"{name}.conv", self.config.image_channels, bias=True, bn=False, src=modulated)
        if previous is not None:
            up = b.resize(f"{name}.skip_upsample", res, src=previous)
            out = b.add(f"{name}.skip_add", out, up)
        b.end_block("to_rgb", in_shape)
        return out
