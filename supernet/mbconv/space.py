"""MobileNet-style spaces of elastic inverted-residual (MBConv) blocks.

One class serves once-for-all's MobileNetV3 space, its MNIST-sized variant and the
MCUNet-style MobileNetV2 space; a frozen config says how they differ. The network is:

    stem conv -> fixed first block (expand 1) -> stages of elastic blocks -> head -> classifier

An arch, in once-for-all's own format:
    {"ks": [kernel per elastic block], "e": [expand ratio per elastic block],
     "d": [depth per stage], "r": input resolution}       (+ "w": width multiplier if elastic)
Block i of stage s is active when its index within the stage is < d[s]; the ks/e entries of
inactive blocks do not change the network, so the canonical form sets them to the smallest
choice and equal networks get equal ids.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from latency_models import BlockSpec, LayerSpec, NetworkSpec, SpecBuilder
from latency_models.spec import Shape
from supernet.errors import InvalidArchError
from supernet.space import Arch, RngLike, SearchSpace, as_rng, make_divisible

SE_REDUCTION = 4  # squeeze-and-excitation bottleneck, as in MobileNetV3 and once-for-all
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class StageConfig:
    width: int  # output channels before the width multiplier
    depths: tuple[int, ...]  # allowed depths; the supernet builds max(depths) blocks
    stride: int  # stride of the stage's first block
    act: str  # "relu", "relu6" or "h_swish"
    se: bool  # squeeze-and-excitation in every block of the stage


@dataclass(frozen=True)
class MBConvSpaceConfig:
    name: str
    head: Literal["mbv3", "mbv2"]  # mbv3: expand, pool, feature mix; mbv2: last conv, pool
    in_channels: int
    num_classes: int
    stem_width: int
    stem_stride: int
    stem_act: str
    first_block_width: int
    first_block_act: str
    stages: tuple[StageConfig, ...]
    head_widths: tuple[int, ...]  # mbv3: (final expand, feature mix); mbv2: (last conv,)
    head_act: str
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    resolutions: tuple[int, ...]
    # One entry: a fixed multiplier (not part of the arch). Several: elastic, gene "w".
    width_mults: tuple[float, ...] = (1.0,)
    dropout: float = 0.1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    description: str = ""
    reference: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def elastic_width(self) -> bool:
        return len(self.width_mults) > 1


@dataclass(frozen=True)
class BlockPlan:
    """One active block of one arch, with every size resolved."""

    index: int  # position in the supernet: 0 is the fixed first block
    stage: int  # -1 for the first block
    in_channels: int
    out_channels: int
    mid_channels: int
    kernel: int
    expand: int
    stride: int
    act: str
    se_channels: int  # 0 when the block has no squeeze-and-excitation
    residual: bool


@dataclass(frozen=True)
class NetPlan:
    resolution: int
    width_mult: float
    stem_channels: int
    blocks: tuple[BlockPlan, ...]
    head_channels: tuple[int, ...]


def se_channels(mid: int) -> int:
    return make_divisible(mid // SE_REDUCTION, CHANNEL_DIVISOR)


def mid_channels(in_channels: int, expand: int) -> int:
    return make_divisible(round(in_channels * expand), CHANNEL_DIVISOR)


class MBConvSpace(SearchSpace):
    def __init__(self, config: MBConvSpaceConfig) -> None:
        self.config = config
        self.name = config.name
        # elastic block index -> (stage, index within stage)
        self.block_stage: list[tuple[int, int]] = [
            (s, j) for s, st in enumerate(config.stages) for j in range(max(st.depths))
        ]
        self.num_blocks = len(self.block_stage)
        self.fields: tuple[str, ...] = ("ks", "e", "d", "r") + (
            ("w",) if config.elastic_width else ()
        )
        # Derived once: validate and to_spec run thousands of times per search.
        self._allowed = {
            "ks": [frozenset(config.kernel_sizes)] * self.num_blocks,
            "e": [frozenset(config.expand_ratios)] * self.num_blocks,
            "d": [frozenset(s.depths) for s in config.stages],
        }
        self._widths = {w: self._compute_widths(w) for w in config.width_mults}
        self._residual = [self._compute_residual(s, j) for s, j in self.block_stage]

    def variant(self, channels: int | None = None, classes: int | None = None) -> MBConvSpace:
        base = self.name.split("[", 1)[0]
        c = self.config
        channels = c.in_channels if channels is None else channels
        classes = c.num_classes if classes is None else classes
        if (channels, classes) == (c.in_channels, c.num_classes):
            return self
        name = f"{base}[channels={channels},classes={classes}]"
        return MBConvSpace(
            dataclasses.replace(c, name=name, in_channels=channels, num_classes=classes)
        )

    # ----- widths and structure -------------------------------------------------------------

    def widths(self, width_mult: float | None = None) -> dict[str, Any]:
        """Channel counts at a width multiplier (default: the largest)."""
        w = max(self.config.width_mults) if width_mult is None else width_mult
        if w in self._widths:
            return self._widths[w]
        return self._compute_widths(w)

    def _compute_widths(self, w: float) -> dict[str, Any]:
        c = self.config
        return {
            "stem": make_divisible(c.stem_width * w, CHANNEL_DIVISOR),
            "first_block": make_divisible(c.first_block_width * w, CHANNEL_DIVISOR),
            "stages": [make_divisible(s.width * w, CHANNEL_DIVISOR) for s in c.stages],
            "head": [make_divisible(h * w, CHANNEL_DIVISOR) for h in c.head_widths],
        }

    def block_has_residual(self, stage: int, index_in_stage: int) -> bool:
        """Structural: decided at the largest width, so it is the same for every arch."""
        return self._residual[self.block_stage.index((stage, index_in_stage))]

    def _compute_residual(self, stage: int, index_in_stage: int) -> bool:
        w = max(self.config.width_mults)
        stride = self.config.stages[stage].stride if index_in_stage == 0 else 1
        in_width = self.block_input_width(stage, index_in_stage, w)
        return stride == 1 and in_width == self.widths(w)["stages"][stage]

    def block_input_width(self, stage: int, index_in_stage: int, width_mult: float) -> int:
        widths = self.widths(width_mult)
        if index_in_stage > 0:
            return widths["stages"][stage]
        return widths["stages"][stage - 1] if stage > 0 else widths["first_block"]

    @property
    def first_block_residual(self) -> bool:
        widths = self.widths()
        return widths["stem"] == widths["first_block"]

    def width_mult(self, arch: Arch) -> float:
        return float(arch["w"]) if self.config.elastic_width else self.config.width_mults[0]

    def plan(self, arch: Arch) -> NetPlan:
        """Resolve every channel count of an arch (shared by to_spec and extraction)."""
        return self._plan(self.validate(arch))

    def _plan(self, arch: Arch) -> NetPlan:
        c = self.config
        w = self.width_mult(arch)
        widths = self.widths(w)
        stem = widths["stem"]
        first_out = widths["first_block"]
        blocks = [
            BlockPlan(
                0,
                -1,
                stem,
                first_out,
                stem,
                3,
                1,
                1,
                c.first_block_act,
                0,
                self.first_block_residual,
            )
        ]
        in_ch = first_out
        for i, (s, j) in enumerate(self.block_stage):
            if j >= arch["d"][s]:
                continue
            stage = c.stages[s]
            out_ch = widths["stages"][s]
            mid = mid_channels(in_ch, arch["e"][i])
            blocks.append(
                BlockPlan(
                    index=i + 1,
                    stage=s,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    mid_channels=mid,
                    kernel=arch["ks"][i],
                    expand=arch["e"][i],
                    stride=stage.stride if j == 0 else 1,
                    act=stage.act,
                    se_channels=se_channels(mid) if stage.se else 0,
                    residual=self._residual[i],
                )
            )
            in_ch = out_ch
        return NetPlan(arch["r"], w, stem, tuple(blocks), tuple(widths["head"]))

    # ----- genes ----------------------------------------------------------------------------

    def _choices(self, key: str, position: int | None = None) -> tuple:
        c = self.config
        if key == "ks":
            return c.kernel_sizes
        if key == "e":
            return c.expand_ratios
        if key == "d":
            return c.stages[position].depths
        if key == "r":
            return c.resolutions
        return c.width_mults

    def _length(self, key: str) -> int:
        return len(self.config.stages) if key == "d" else self.num_blocks

    def _active(self, arch: Arch, i: int) -> bool:
        s, j = self.block_stage[i]
        return j < arch["d"][s]

    def _pick(self, rng: np.random.Generator, choices: Sequence) -> Any:
        return choices[int(rng.integers(len(choices)))]

    def sample(self, rng: RngLike = None) -> Arch:
        rng = as_rng(rng)
        c = self.config
        arch: Arch = {
            "ks": [self._pick(rng, c.kernel_sizes) for _ in range(self.num_blocks)],
            "e": [self._pick(rng, c.expand_ratios) for _ in range(self.num_blocks)],
            "d": [self._pick(rng, s.depths) for s in c.stages],
            "r": self._pick(rng, c.resolutions),
        }
        if c.elastic_width:
            arch["w"] = self._pick(rng, c.width_mults)
        return self.canonical(arch)

    def mutate(self, arch: Arch, rng: RngLike = None, prob: float = 0.1) -> Arch:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation prob must be in [0, 1], got {prob}")
        rng = as_rng(rng)
        parent = self.canonical(arch)
        child: Arch = {k: list(v) if isinstance(v, list) else v for k, v in parent.items()}
        for s in range(len(self.config.stages)):
            if rng.random() < prob:
                child["d"][s] = self._pick(rng, self._choices("d", s))
        for i in range(self.num_blocks):
            for key in ("ks", "e"):
                # A block switched on by a deeper stage gets a fresh gene: the parent's value
                # there is only the canonical placeholder, and keeping it would bias the search.
                newly_active = self._active(child, i) and not self._active(parent, i)
                if newly_active or rng.random() < prob:
                    child[key][i] = self._pick(rng, self._choices(key))
        for key in ("r", "w") if self.config.elastic_width else ("r",):
            if rng.random() < prob:
                child[key] = self._pick(rng, self._choices(key))
        return self.canonical(child)

    def crossover(self, a: Arch, b: Arch, rng: RngLike = None) -> Arch:
        rng = as_rng(rng)
        a, b = self.canonical(a), self.canonical(b)
        parents = (a, b)
        child: Arch = {"d": [parents[int(rng.integers(2))]["d"][s] for s in range(len(a["d"]))]}
        for key in ("ks", "e"):
            genes = []
            for i in range(self.num_blocks):
                # prefer a parent in which the block is active, so the gene was really chosen
                donors = [p for p in parents if self._active(p, i)] or list(parents)
                genes.append(donors[int(rng.integers(len(donors)))][key][i])
            child[key] = genes
        for key in ("r", "w") if self.config.elastic_width else ("r",):
            child[key] = parents[int(rng.integers(2))][key]
        return self.canonical(child)

    # ----- validation and canonical form ----------------------------------------------------

    def validate(self, arch: Any) -> Arch:
        self._check_fields(arch, self.fields)
        out: Arch = {}
        for key in ("ks", "e", "d"):
            value = arch[key]
            if not isinstance(value, list | tuple):
                raise InvalidArchError(
                    self.name, key, f"expected a list, got {type(value).__name__} {value!r}"
                )
            if len(value) != self._length(key):
                raise InvalidArchError(
                    self.name, key, f"expected {self._length(key)} entries, got {len(value)}"
                )
            allowed = self._allowed[key]
            # fast path for the common case; the slow path finds and names the bad entry
            if all(type(v) is int and v in a for v, a in zip(value, allowed, strict=True)):
                out[key] = list(value)
            else:
                out[key] = [self._check_int(key, i, v) for i, v in enumerate(value)]
        out["r"] = self._check_int("r", None, arch["r"])
        if self.config.elastic_width:
            out["w"] = self._check_width(arch["w"])
        return out

    def _check_int(self, key: str, position: int | None, value: Any) -> int:
        allowed = self._choices(key, position)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidArchError(
                self.name,
                key,
                f"value {value!r} is not an integer",
                position=position,
                value=value,
                allowed=list(allowed),
            )
        if int(value) not in allowed:
            raise InvalidArchError(
                self.name,
                key,
                f"value {value!r} is not allowed",
                position=position,
                value=value,
                allowed=list(allowed),
            )
        return int(value)

    def _check_width(self, value: Any) -> float:
        allowed = list(self.config.width_mults)
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidArchError(
                self.name, "w", f"value {value!r} is not a number", value=value, allowed=allowed
            )
        for choice in allowed:
            if abs(float(value) - choice) < 1e-9:
                return float(choice)
        raise InvalidArchError(
            self.name, "w", f"value {value!r} is not allowed", value=value, allowed=allowed
        )

    def canonical(self, arch: Arch) -> Arch:
        arch = self.validate(arch)
        for i in range(self.num_blocks):
            if not self._active(arch, i):
                arch["ks"][i] = min(self.config.kernel_sizes)
                arch["e"][i] = min(self.config.expand_ratios)
        return arch

    # ----- genes for samplers -----------------------------------------------------------------

    def genes(self) -> list[tuple[str, tuple]]:
        """One gene per block for kernel and expand together ("k5e4"), then depths, r, w.

        Pairing ks and e halves the number of parameters a sampler handles per candidate,
        which is what bounds Optuna's throughput (it costs about 30 us per parameter).
        """
        c = self.config
        pairs = tuple(f"k{k}e{e}" for k in c.kernel_sizes for e in c.expand_ratios)
        genes = [(f"ke.{i}", pairs) for i in range(self.num_blocks)]
        genes += [(f"d.{s}", tuple(stage.depths)) for s, stage in enumerate(c.stages)]
        genes.append(("r", tuple(c.resolutions)))
        if c.elastic_width:
            genes.append(("w", tuple(c.width_mults)))
        return genes

    def from_genes(self, genes: dict[str, Any]) -> Arch:
        try:
            pairs = [genes[f"ke.{i}"] for i in range(self.num_blocks)]
            ks = [int(p[1 : p.index("e")]) for p in pairs]
            es = [int(p[p.index("e") + 1 :]) for p in pairs]
            arch: Arch = {
                "ks": ks,
                "e": es,
                "d": [genes[f"d.{s}"] for s in range(len(self.config.stages))],
                "r": genes["r"],
            }
            if self.config.elastic_width:
                arch["w"] = genes["w"]
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise InvalidArchError(
                self.name, "<genes>", f"incomplete or malformed: {err}"
            ) from None
        return self.canonical(arch)

    def to_genes(self, arch: Arch) -> dict[str, Any]:
        arch = self.canonical(arch)
        genes: dict[str, Any] = {
            f"ke.{i}": f"k{k}e{e}"
            for i, (k, e) in enumerate(zip(arch["ks"], arch["e"], strict=True))
        }
        genes.update({f"d.{s}": d for s, d in enumerate(arch["d"])})
        genes["r"] = arch["r"]
        if self.config.elastic_width:
            genes["w"] = arch["w"]
        return genes

    # ----- predictors, sizes, specs ---------------------------------------------------------

    @property
    def encoding_size(self) -> int:
        c = self.config
        size = self.num_blocks * (len(c.kernel_sizes) + len(c.expand_ratios))
        size += sum(len(s.depths) for s in c.stages) + len(c.resolutions)
        return size + (len(c.width_mults) if c.elastic_width else 0)

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot genes; an inactive block's ks and e are all zeros (as once-for-all does)."""
        arch = self.canonical(arch)
        c = self.config
        parts: list[np.ndarray] = []
        for i in range(self.num_blocks):
            active = self._active(arch, i)
            for key, choices in (("ks", c.kernel_sizes), ("e", c.expand_ratios)):
                parts.append(_one_hot(choices, arch[key][i] if active else None))
        for s, stage in enumerate(c.stages):
            parts.append(_one_hot(stage.depths, arch["d"][s]))
        parts.append(_one_hot(c.resolutions, arch["r"]))
        if c.elastic_width:
            parts.append(_one_hot(c.width_mults, arch["w"]))
        return np.concatenate(parts).astype(np.float32)

    def size(self) -> int:
        c = self.config
        per_block = len(c.kernel_sizes) * len(c.expand_ratios)
        total = 1
        for stage in c.stages:
            total *= sum(per_block**d for d in stage.depths)
        return total * len(c.resolutions) * (len(c.width_mults) if c.elastic_width else 1)

    def _extreme(self, pick: Any) -> Arch:
        c = self.config
        arch: Arch = {
            "ks": [pick(c.kernel_sizes)] * self.num_blocks,
            "e": [pick(c.expand_ratios)] * self.num_blocks,
            "d": [pick(s.depths) for s in c.stages],
            "r": pick(c.resolutions),
        }
        if c.elastic_width:
            arch["w"] = pick(c.width_mults)
        return self.canonical(arch)

    def largest(self) -> Arch:
        return self._extreme(max)

    def input_shape(self, arch: Arch, batch: int = 1) -> tuple[int, ...]:
        return (batch, self.config.in_channels, arch["r"], arch["r"])

    def block_cover(self, resolutions: Sequence[int] | None = None) -> list[Arch]:
        """Every resolution (and width) with all blocks at each (kernel, expand) choice and
        full depth: together they hold every distinct block shape."""
        c = self.config
        archs = []
        for r in resolutions or c.resolutions:
            for w in c.width_mults if c.elastic_width else [None]:
                for k in c.kernel_sizes:
                    for e in c.expand_ratios:
                        arch: Arch = {
                            "ks": [k] * self.num_blocks,
                            "e": [e] * self.num_blocks,
                            "d": [max(s.depths) for s in c.stages],
                            "r": r,
                        }
                        if w is not None:
                            arch["w"] = w
                        archs.append(self.validate(arch))
        return archs

    def smallest(self) -> Arch:
        return self._extreme(min)

    def describe(self) -> dict[str, Any]:
        c = self.config
        genes: dict[str, Any] = {
            "ks": {"length": self.num_blocks, "choices": list(c.kernel_sizes)},
            "e": {"length": self.num_blocks, "choices": list(c.expand_ratios)},
            "d": {"length": len(c.stages), "choices": [list(s.depths) for s in c.stages]},
            "r": {"choices": list(c.resolutions)},
        }
        if c.elastic_width:
            genes["w"] = {"choices": list(c.width_mults)}
        return {
            "name": self.name,
            "description": c.description,
            "reference": c.reference,
            "input_channels": c.in_channels,
            "num_classes": c.num_classes,
            "genes": genes,
            "widths_at_max": self.widths(),
            "size": self.size(),
        }

    def to_spec(self, arch: Arch, batch: int = 1) -> NetworkSpec:
        """Layers are built block by block; each block is cached (a search builds thousands
        of specs from a few hundred distinct blocks)."""
        arch = self.canonical(arch)
        plan = self._plan(arch)
        c = self.config
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
            name=f"{self.name}:{self.canonical_id(arch)}",
            blocks=tuple(block for _, block in parts),
        )


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


def _one_hot(choices: Sequence, value: Any) -> np.ndarray:
    vec = np.zeros(len(choices), dtype=np.float32)
    if value is not None:
        vec[list(choices).index(value)] = 1.0
    return vec
