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

import numpy as np

from latency_models import NetworkSpec, SpecBuilder
from supernet.errors import InvalidArchError
from supernet.space import Arch, RngLike, SearchSpace, as_rng


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
        self.fields = ("ch", "res")
        self.resolution_gene = "res"
        # layer i is followed by a ToRGB when it is the last layer of its resolution
        self.ends_resolution = [
            i + 1 == self.num_layers or self.layers[i + 1].resolution != layer.resolution
            for i, layer in enumerate(self.layers)
        ]

    # ----- structure --------------------------------------------------------------------------

    def channels(self, arch: Arch) -> list[int]:
        """Output channels of every layer (inactive layers included, at their ratio)."""
        arch = self.validate(arch)
        return [self.width(layer, r) for layer, r in zip(self.layers, arch["ch"], strict=True)]

    def width(self, layer: GanLayer, ratio: float) -> int:
        return max(1, round(self.config.widths[layer.resolution] * ratio))

    def active(self, arch: Arch, index: int) -> bool:
        return self.layers[index].resolution <= arch["res"]

    # ----- validation and canonical form ----------------------------------------------------

    def validate(self, arch: Any) -> Arch:
        self._check_fields(arch, self.fields)
        ch = arch["ch"]
        if not isinstance(ch, list | tuple):
            raise InvalidArchError(self.name, "ch", f"expected a list, got {type(ch).__name__}")
        if len(ch) != self.num_layers:
            raise InvalidArchError(
                self.name, "ch", f"expected {self.num_layers} entries, got {len(ch)}"
            )
        ratios = [self._ratio(i, v) for i, v in enumerate(ch)]
        res = arch["res"]
        allowed = list(self.config.resolutions)
        if isinstance(res, bool) or not isinstance(res, int | np.integer):
            raise InvalidArchError(
                self.name, "res", f"value {res!r} is not an integer", value=res, allowed=allowed
            )
        if int(res) not in allowed:
            raise InvalidArchError(
                self.name, "res", f"value {res!r} is not allowed", value=res, allowed=allowed
            )
        return {"ch": ratios, "res": int(res)}

    def _ratio(self, position: int, value: Any) -> float:
        allowed = list(self.config.ratios)
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidArchError(
                self.name,
                "ch",
                f"value {value!r} is not a number",
                position=position,
                value=value,
                allowed=allowed,
            )
        for choice in allowed:
            if abs(float(value) - choice) < 1e-9:
                return float(choice)
        raise InvalidArchError(
            self.name,
            "ch",
            f"value {value!r} is not allowed",
            position=position,
            value=value,
            allowed=allowed,
        )

    def canonical(self, arch: Arch) -> Arch:
        arch = self.validate(arch)
        low = min(self.config.ratios)
        arch["ch"] = [r if self.active(arch, i) else low for i, r in enumerate(arch["ch"])]
        return arch

    # ----- sampling and genetic operators ---------------------------------------------------

    def _pick(self, rng: np.random.Generator, choices: Sequence) -> Any:
        return choices[int(rng.integers(len(choices)))]

    def sample(self, rng: RngLike = None) -> Arch:
        """Half uniform configs (one ratio everywhere), half flexible per-layer configs."""
        rng = as_rng(rng)
        c = self.config
        if rng.random() < 0.5:
            ch = [self._pick(rng, c.ratios)] * self.num_layers
        else:
            ch = [self._pick(rng, c.ratios) for _ in range(self.num_layers)]
        return self.canonical({"ch": ch, "res": self._pick(rng, c.resolutions)})

    def mutate(self, arch: Arch, rng: RngLike = None, prob: float = 0.1) -> Arch:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation prob must be in [0, 1], got {prob}")
        rng = as_rng(rng)
        parent = self.canonical(arch)
        res = self._pick(rng, self.config.resolutions) if rng.random() < prob else parent["res"]
        child = {"ch": list(parent["ch"]), "res": res}
        for i in range(self.num_layers):
            newly_active = self.active(child, i) and not self.active(parent, i)
            if newly_active or rng.random() < prob:
                child["ch"][i] = self._pick(rng, self.config.ratios)
        return self.canonical(child)

    def crossover(self, a: Arch, b: Arch, rng: RngLike = None) -> Arch:
        rng = as_rng(rng)
        parents = (self.canonical(a), self.canonical(b))
        res = parents[int(rng.integers(2))]["res"]
        ch = []
        for i in range(self.num_layers):
            donors = [p for p in parents if self.active(p, i)] or list(parents)
            ch.append(donors[int(rng.integers(len(donors)))]["ch"][i])
        return self.canonical({"ch": ch, "res": res})

    def genes(self) -> list[tuple[str, tuple]]:
        genes = [(f"ch.{i}", tuple(self.config.ratios)) for i in range(self.num_layers)]
        return [*genes, ("res", tuple(self.config.resolutions))]

    def from_genes(self, genes: dict[str, Any]) -> Arch:
        try:
            arch = {"ch": [genes[f"ch.{i}"] for i in range(self.num_layers)], "res": genes["res"]}
        except KeyError as err:
            raise InvalidArchError(self.name, "<genes>", f"missing gene {err}") from None
        return self.canonical(arch)

    def to_genes(self, arch: Arch) -> dict[str, Any]:
        arch = self.canonical(arch)
        return {**{f"ch.{i}": r for i, r in enumerate(arch["ch"])}, "res": arch["res"]}

    # ----- predictors, sizes, specs ---------------------------------------------------------

    @property
    def encoding_size(self) -> int:
        return self.num_layers * len(self.config.ratios) + len(self.config.resolutions)

    def encode(self, arch: Arch) -> np.ndarray:
        arch = self.canonical(arch)
        c = self.config
        vec = np.zeros(self.encoding_size, dtype=np.float32)
        for i, ratio in enumerate(arch["ch"]):
            if self.active(arch, i):
                vec[i * len(c.ratios) + c.ratios.index(ratio)] = 1.0
        vec[self.num_layers * len(c.ratios) + c.resolutions.index(arch["res"])] = 1.0
        return vec

    def size(self) -> int:
        total = 0
        for res in self.config.resolutions:
            active = sum(1 for layer in self.layers if layer.resolution <= res)
            total += len(self.config.ratios) ** active
        return total

    def largest(self) -> Arch:
        return self.canonical(
            {"ch": [max(self.config.ratios)] * self.num_layers, "res": max(self.config.resolutions)}
        )

    def smallest(self) -> Arch:
        return self.canonical(
            {"ch": [min(self.config.ratios)] * self.num_layers, "res": min(self.config.resolutions)}
        )

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
            "genes": {
                "ch": {"length": self.num_layers, "choices": list(c.ratios)},
                "res": {"choices": list(c.resolutions)},
            },
            "layers": [layer.name for layer in self.layers],
            "widths": dict(c.widths),
            "size": self.size(),
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
        b = SpecBuilder((c.z_dim, 1, 1), name=f"{self.name}:{self.canonical_id(arch)}", batch=batch)
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
