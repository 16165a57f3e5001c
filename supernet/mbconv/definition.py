"""An MBConv space as data: the schema of its definition, checked field by field.

A definition holds every field of `MBConvSpaceConfig` (stages as mappings of width, depths,
stride, act and se). `get_space` reads one from a YAML file or a mapping, after applying a
`base` preset when there is one (supernet.space.space_from_definition). Each check raises a
SpaceDefinitionError naming the field path (`stages[2].stride`), the value and what is
allowed; the checker goes on past a bad field, so the error carries every problem it found
(`problems`) and a user fixes a file in one pass. A space that could not train is refused
here, never in the middle of training: a stride on a map already 1x1 at the smallest
resolution, a width that `make_divisible` lifts far above what was asked, a depth above what
a stage may hold, a supernet too large to hold in memory.

    kind: mbconv            # optional: the only kind of this module
    base: mcu-mbv2          # optional: a preset; the fields below replace its own
    name: cifar-mbconv
    resolutions: [24, 28, 32]
    width_mults: [0.5, 0.75, 1.0]
    stages:
      - {width: 24, depths: [1, 2], stride: 2, act: relu6, se: false}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from latency_models.families import make_divisible
from supernet.definition import DefinitionChecker, T, check_params
from supernet.io import short_repr
from supernet.mbconv.space import CHANNEL_DIVISOR, MBConvSpace, MBConvSpaceConfig, StageConfig
from supernet.space import (
    LABEL_FIELDS,
    data_space_name,
    definition_hash,
    register_space_kind,
)

ACTIVATIONS = ("h_swish", "relu", "relu6")  # those the blocks and the cost models both know
HEADS = {"mbv3": 2, "mbv2": 1}  # head -> how many head widths it takes
STRIDES = (1, 2)
MAX_STAGES = 12
MAX_STAGE_DEPTH = 12  # blocks one stage may hold: its largest depth choice
MAX_CHANNELS = 8192  # a width times the largest width multiplier
MAX_EXPAND = 12
MAX_KERNEL = 15
MAX_RESOLUTION = 2048
MAX_IN_CHANNELS = 64
MAX_CLASSES = 100_000
MAX_WIDTH_MULT = 4.0
STAGE_FIELDS = ("width", "depths", "stride", "act", "se")
FIELDS = (
    "kind",
    *LABEL_FIELDS,
    "in_channels",
    "num_classes",
    "stem_width",
    "stem_stride",
    "stem_act",
    "first_block_width",
    "first_block_act",
    "stages",
    "head",
    "head_widths",
    "head_act",
    "kernel_sizes",
    "expand_ratios",
    "resolutions",
    "width_mults",
    "dropout",
    "bn_momentum",
    "bn_eps",
)
# Fields a definition may leave out, with the value it then has.
DEFAULTS: dict[str, Any] = {
    "kind": "mbconv",
    "name": "custom",
    "description": "",
    "reference": "",
    "width_mults": [1.0],
    "dropout": 0.1,
    "bn_momentum": 0.1,
    "bn_eps": 1e-5,
}
STAGE_DEFAULTS: dict[str, Any] = {"se": False}


def parse_definition(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The canonical definition of `raw` (defaults filled, choice lists sorted and unique,
    widths as given), or SpaceDefinitionError with every problem found; the structural
    checks that need the whole definition are in `check_buildable`."""
    c = DefinitionChecker(source)
    d = c.fields("", raw, FIELDS, DEFAULTS)

    def field(name: str, check: Callable[[str, Any], T]) -> T | None:
        """The checked field, or None where it is missing or bad (its problem noted)."""
        return c.gather(lambda: check(name, d[name])) if name in d else None

    def channels(path: str, value: Any) -> int:
        return c.integer(path, value, 1, MAX_CHANNELS)

    def activation(path: str, value: Any) -> str:
        return c.one_of(path, value, ACTIVATIONS)

    def stride(path: str, value: Any) -> int:
        return c.integer(path, value, min(STRIDES), max(STRIDES))

    def depths(path: str, value: Any) -> list[int]:
        return c.choices(path, value, lambda p, v: c.integer(p, v, 1, MAX_STAGE_DEPTH))

    def stage(path: str, value: Any) -> dict[str, Any]:
        s = c.fields(path, value, STAGE_FIELDS, STAGE_DEFAULTS)
        checks = {"width": channels, "depths": depths, "stride": stride, "act": activation}
        checks["se"] = c.flag

        def part(key: str) -> Any:
            return c.gather(lambda: checks[key](f"{path}.{key}", s[key])) if key in s else None

        return {key: part(key) for key in STAGE_FIELDS}

    def kernel(path: str, value: Any) -> int:
        k = c.integer(path, value, 1, MAX_KERNEL)
        if k % 2 == 0:
            c.fail(path, f"{k} is even; a kernel size is odd (1, 3, 5, ..., {MAX_KERNEL})")
        return k

    def expand_ratios(path: str, value: Any) -> list[int]:
        ratios = c.choices(path, value, lambda p, v: c.integer(p, v, 1, MAX_EXPAND))
        if 1 in ratios and len(ratios) > 1:
            c.fail(
                path,
                f"{ratios}: 1 (no expansion conv) is allowed only as the sole choice, "
                "since a block either has an expansion conv or not",
            )
        return ratios

    head = field("head", lambda p, v: c.one_of(p, v, tuple(HEADS)))
    head_widths = field("head_widths", lambda p, v: c.items(p, v, channels))
    if head is not None and head_widths is not None and len(head_widths) != HEADS[head]:
        parts = "final expand, feature mix" if head == "mbv3" else "last conv"
        c.problems.append(
            (
                "head_widths",
                f"{short_repr(d['head_widths'])} has {len(head_widths)} widths; head "
                f"{head!r} takes {HEADS[head]} ({parts})",
            )
        )
    stages = field("stages", lambda p, v: c.items(p, v, stage))
    if stages is not None and len(stages) > MAX_STAGES:
        c.problems.append(("stages", f"{len(stages)} stages; allowed: 1..{MAX_STAGES}"))
    definition = {
        "kind": "mbconv",
        "name": field("name", c.label),
        "description": field("description", c.text),
        "reference": field("reference", c.text),
        "in_channels": field("in_channels", lambda p, v: c.integer(p, v, 1, MAX_IN_CHANNELS)),
        "num_classes": field("num_classes", lambda p, v: c.integer(p, v, 1, MAX_CLASSES)),
        "stem_width": field("stem_width", channels),
        "stem_stride": field("stem_stride", stride),
        "stem_act": field("stem_act", activation),
        "first_block_width": field("first_block_width", channels),
        "first_block_act": field("first_block_act", activation),
        "stages": stages,
        "head": head,
        "head_widths": head_widths,
        "head_act": field("head_act", activation),
        "kernel_sizes": field("kernel_sizes", lambda p, v: c.choices(p, v, kernel)),
        "expand_ratios": field("expand_ratios", expand_ratios),
        "resolutions": field(
            "resolutions",
            lambda p, v: c.choices(p, v, lambda q, w: c.integer(q, w, 1, MAX_RESOLUTION)),
        ),
        "width_mults": field(
            "width_mults",
            lambda p, v: c.choices(
                p, v, lambda q, w: c.number(q, w, 0.0, MAX_WIDTH_MULT, low_open=True)
            ),
        ),
        "dropout": field("dropout", lambda p, v: c.number(p, v, 0.0, 0.99, low_open=False)),
        "bn_momentum": field("bn_momentum", lambda p, v: c.number(p, v, 0.0, 1.0, low_open=True)),
        "bn_eps": field("bn_eps", lambda p, v: c.number(p, v, 0.0, 0.1, low_open=True)),
    }
    c.raise_problems()
    return definition


def check_buildable(d: dict[str, Any], source: str) -> None:
    """The checks across fields, each problem noted: every width survives `make_divisible`
    at every width multiplier and stays under MAX_CHANNELS, and no stride acts on a map
    already 1x1 at the smallest resolution."""
    c = DefinitionChecker(source)
    widths = [("stem_width", d["stem_width"]), ("first_block_width", d["first_block_width"])]
    widths += [(f"stages[{i}].width", s["width"]) for i, s in enumerate(d["stages"])]
    widths += [(f"head_widths[{i}]", w) for i, w in enumerate(d["head_widths"])]
    low, high = min(d["width_mults"]), max(d["width_mults"])
    for path, width in widths:
        if width * low < CHANNEL_DIVISOR / 2:
            rounded = make_divisible(width * low, CHANNEL_DIVISOR)
            c.problems.append(
                (
                    path,
                    f"{width} at width multiplier {low:g} is {width * low:g} channels, which "
                    f"make_divisible lifts to {rounded}: the width is lost; allowed: at least "
                    f"{math.ceil(CHANNEL_DIVISOR / 2 / low)} at this multiplier",
                )
            )
        if make_divisible(width * high, CHANNEL_DIVISOR) > MAX_CHANNELS:
            c.problems.append(
                (
                    path,
                    f"{width} at width multiplier {high:g} is over {MAX_CHANNELS} channels; "
                    f"allowed: at most {int(MAX_CHANNELS / high)} at this multiplier",
                )
            )
    smallest = min(d["resolutions"])
    size, trail = smallest, [smallest]
    strided = [("stem_stride", d["stem_stride"])]
    strided += [(f"stages[{i}].stride", s["stride"]) for i, s in enumerate(d["stages"])]
    for path, stride in strided:
        if stride > 1 and size < stride:
            shrink = " -> ".join(str(s) for s in trail)
            # Only the first: every later stride fails on the same 1x1 map, for one cause.
            c.problems.append(
                (
                    path,
                    f"{stride} makes the feature map vanish at the smallest resolution "
                    f"{smallest}: it is already {size}x{size} there ({shrink}); use stride 1 "
                    f"or resolutions of at least {smallest * stride}",
                )
            )
            break
        size = -(-size // stride)  # "same" padding: ceil(size / stride)
        trail.append(size)
    c.raise_problems()


@register_space_kind("mbconv")
def mbconv_space_from_definition(raw: Mapping[str, Any], source: str) -> MBConvSpace:
    """An MBConvSpace from its definition (see the module docstring)."""
    d = parse_definition(raw, source)
    check_buildable(d, source)
    digest = definition_hash(d)
    config = MBConvSpaceConfig(
        name=data_space_name(d["name"], digest),
        head=d["head"],
        in_channels=d["in_channels"],
        num_classes=d["num_classes"],
        stem_width=d["stem_width"],
        stem_stride=d["stem_stride"],
        stem_act=d["stem_act"],
        first_block_width=d["first_block_width"],
        first_block_act=d["first_block_act"],
        stages=tuple(
            StageConfig(s["width"], tuple(s["depths"]), s["stride"], s["act"], s["se"])
            for s in d["stages"]
        ),
        head_widths=tuple(d["head_widths"]),
        head_act=d["head_act"],
        kernel_sizes=tuple(d["kernel_sizes"]),
        expand_ratios=tuple(d["expand_ratios"]),
        resolutions=tuple(d["resolutions"]),
        width_mults=tuple(d["width_mults"]),
        dropout=d["dropout"],
        bn_momentum=d["bn_momentum"],
        bn_eps=d["bn_eps"],
        description=d["description"],
        reference=d["reference"],
    )
    space = MBConvSpace(config)
    check_params(space, source, "narrow the widths, expand ratios or depths")
    return space
