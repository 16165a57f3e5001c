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

from latency_models import NetworkSpec, SpecBatch
from latency_models.families import make_divisible
from supernet.mbconv import spec as _spec
from supernet.space import Arch, ArchField, CanonicalArch, SearchSpace

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
    """Genes and structure of an MBConv space; the layers of an arch are built in `spec`."""

    def __init__(self, config: MBConvSpaceConfig) -> None:
        self.config = config
        self.name = config.name
        # elastic block index -> (stage, index within stage)
        self.block_stage: list[tuple[int, int]] = [
            (s, j) for s, st in enumerate(config.stages) for j in range(max(st.depths))
        ]
        self.num_blocks = len(self.block_stage)
        # Derived once: validate and to_spec run thousands of times per search.
        self._widths = {w: self._compute_widths(w) for w in config.width_mults}
        self._residual = [self._compute_residual(s, j) for s, j in self.block_stage]

    def variant(self, channels: int | None = None, classes: int | None = None) -> MBConvSpace:
        base = self.name.split("[", 1)[0]
        c = self.config
        channels = c.in_channels if channels is None else channels
        classes = c.num_classes if classes is None else classes
        if (channels, classes) == (c.in_channels, c.num_classes):
            return self
        if "@" in self.name:  # a space from data: another network, so another hash and name
            from supernet.space import space_from_definition

            changed = {**self.definition(), "in_channels": channels, "num_classes": classes}
            return space_from_definition(changed, f"{self.label} for the data")  # type: ignore[return-value]
        name = f"{base}[channels={channels},classes={classes}]"
        return MBConvSpace(
            dataclasses.replace(c, name=name, in_channels=channels, num_classes=classes)
        )

    def definition(self) -> dict[str, Any]:
        """Every field of the config as JSON-able data, choice lists sorted (see
        supernet.mbconv.definition for the schema and its checks)."""
        c = self.config

        def choices(values: Sequence[Any], kind: type = int) -> list[Any]:
            return sorted({kind(v) for v in values})

        return {
            "kind": "mbconv",
            "name": self.label,
            "description": c.description,
            "reference": c.reference,
            "in_channels": c.in_channels,
            "num_classes": c.num_classes,
            "stem_width": c.stem_width,
            "stem_stride": c.stem_stride,
            "stem_act": c.stem_act,
            "first_block_width": c.first_block_width,
            "first_block_act": c.first_block_act,
            "stages": [
                {
                    "width": s.width,
                    "depths": choices(s.depths),
                    "stride": s.stride,
                    "act": s.act,
                    "se": bool(s.se),
                }
                for s in c.stages
            ],
            "head": c.head,
            "head_widths": list(c.head_widths),
            "head_act": c.head_act,
            "kernel_sizes": choices(c.kernel_sizes),
            "expand_ratios": choices(c.expand_ratios),
            "resolutions": choices(c.resolutions),
            "width_mults": choices(c.width_mults, float),
            "dropout": float(c.dropout),
            "bn_momentum": float(c.bn_momentum),
            "bn_eps": float(c.bn_eps),
        }

    # ----- the arch layout ------------------------------------------------------------------

    def arch_fields(self) -> tuple[ArchField, ...]:
        c = self.config
        n = self.num_blocks
        fields = (
            ArchField.many("ks", [c.kernel_sizes] * n, role="gated"),
            ArchField.many("e", [c.expand_ratios] * n, role="gated"),
            ArchField.many("d", [s.depths for s in c.stages], role="controls"),
            ArchField.one("r", c.resolutions),
        )
        if c.elastic_width:
            fields += (ArchField.one("w", c.width_mults, kind="float"),)
        return fields

    def gene_active(self, arch: Arch, field: str, position: int) -> bool:
        """Block i of stage s runs when its index within the stage is below d[s]."""
        s, j = self.block_stage[position]
        return j < arch["d"][s]

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
        arch = self.canonical(arch)
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

    # ----- genes for samplers -----------------------------------------------------------------
    # sample, mutate and crossover are the generic ones: they draw per field ("ks", "e", ...),
    # not per sampler gene, so the pairing below does not change any seeded result.

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

    def _arch_of_genes(self, genes: Mapping[str, Any]) -> Arch:
        pairs = [genes[f"ke.{i}"] for i in range(self.num_blocks)]
        arch: Arch = {
            "ks": [int(p[1 : p.index("e")]) for p in pairs],
            "e": [int(p[p.index("e") + 1 :]) for p in pairs],
            "d": [genes[f"d.{s}"] for s in range(len(self.config.stages))],
            "r": genes["r"],
        }
        if self.config.elastic_width:
            arch["w"] = genes["w"]
        return arch

    def _genes_of_arch(self, arch: Arch) -> dict[str, Any]:
        genes: dict[str, Any] = {
            f"ke.{i}": f"k{k}e{e}"
            for i, (k, e) in enumerate(zip(arch["ks"], arch["e"], strict=True))
        }
        genes.update({f"d.{s}": d for s, d in enumerate(arch["d"])})
        genes["r"] = arch["r"]
        if self.config.elastic_width:
            genes["w"] = arch["w"]
        return genes

    # ----- description and specs ------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        c = self.config
        genes = self.describe_genes()
        genes["d"]["choices"] = [list(s.depths) for s in c.stages]  # per stage, even if equal
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

    def input_shape(self, arch: Arch, batch: int = 1) -> tuple[int, ...]:
        return (batch, self.config.in_channels, arch["r"], arch["r"])

    def block_cover(self, resolutions: Sequence[int] | None = None) -> list[CanonicalArch]:
        """Every resolution (and width) with all blocks at each (kernel, expand) choice and
        full depth: together they hold every distinct block shape."""
        return _spec.block_cover(self, resolutions)

    def to_spec(self, arch: Arch, batch: int = 1) -> NetworkSpec:
        """Layers are built block by block; each block is cached (a search builds thousands
        of specs from a few hundred distinct blocks)."""
        arch = self.canonical(arch)
        return _spec.network_spec(self, self.plan(arch), self.arch_id(arch), batch)

    def spec_batch(self, archs: Sequence[Arch], batch: int = 1) -> SpecBatch:
        """The rows of a generation's networks from genes, with no NetworkSpec per arch:
        each network is the stem and first block, its active elastic blocks and the head,
        and each of those parts depends on its own genes alone (see `_spec.PartCodes`)."""
        archs = [self.canonical(a) for a in archs]
        return self._parts.batch(archs, batch)

    @functools.cached_property
    def _parts(self) -> _spec.PartCodes:
        return _spec.PartCodes(self)
