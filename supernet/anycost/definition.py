"""An Anycost GAN space as data: the schema of its definition, checked field by field.

A definition holds every field of `AnycostGANConfig`; `get_space` reads one from a YAML file
or a mapping, after applying a `base` preset when there is one (`base: anycost-gan-mnist`
and the fields that differ). The checks go field by field as the MBConv ones do
(supernet.definition.DefinitionChecker: every problem at once, each naming the field path,
the value and what is allowed), and refuse here, never in the middle of training, a
generator that could not train: an image size the doubling layers cannot reach, a
resolution with no width, an output resolution the discriminator has no input for, a width
that rounds to no channel at the smallest ratio, a generator too large to hold in memory.

    kind: anycost_gan        # required unless `base` names a GAN preset
    base: anycost-gan-mnist  # optional: a preset; the fields below replace its own
    name: gan-small
    image_channels: 1
    image_size: 32           # a power of two, 8..1024: one 4x4 conv, then two per doubling
    z_dim: 32
    w_dim: 32
    mapping_layers: 2
    widths: {4: 64, 8: 64, 16: 32, 32: 16}   # full channels of each resolution's layers
    ratios: [0.5, 1.0]       # channel ratios a layer may take; 1.0 (the full width) included
    resolutions: [16, 32]    # output resolutions a sub-generator may stop at
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from supernet.anycost.space import AnycostGANConfig, AnycostGANSpace
from supernet.definition import DefinitionChecker, T, check_params
from supernet.io import short_repr
from supernet.space import LABEL_FIELDS, data_space_name, definition_hash, register_space_kind

KIND = "anycost_gan"
MIN_IMAGE_SIZE = 8  # the smallest output the discriminator takes (it has no 4x4 input)
MAX_IMAGE_SIZE = 1024
MAX_IMAGE_CHANNELS = 64
MAX_LATENT = 4096  # z and w
MAX_MAPPING_LAYERS = 16
MAX_CHANNELS = 4096  # a resolution's full width
FIELDS = (
    "kind",
    *LABEL_FIELDS,
    "image_channels",
    "image_size",
    "z_dim",
    "w_dim",
    "mapping_layers",
    "widths",
    "ratios",
    "resolutions",
)
# Fields a definition may leave out, with the value it then has.
DEFAULTS: dict[str, Any] = {"kind": KIND, "name": "custom-gan", "description": "", "reference": ""}


def generator_resolutions(image_size: int) -> list[int]:
    """The resolutions the generator has layers at: 4, then each doubling up to image_size."""
    out, size = [4], 8
    while size <= image_size:
        out.append(size)
        size *= 2
    return out


def parse_definition(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The canonical definition of `raw` (defaults filled, choice lists sorted and unique,
    widths keyed by int resolution), or SpaceDefinitionError with every problem found."""
    c = DefinitionChecker(source)
    d = c.fields("", raw, FIELDS, DEFAULTS)

    def field(name: str, check: Callable[[str, Any], T]) -> T | None:
        """The checked field, or None where it is missing or bad (its problem noted)."""
        return c.gather(lambda: check(name, d[name])) if name in d else None

    def power_of_two(path: str, value: Any, low: int, high: int) -> int:
        allowed = [s for s in generator_resolutions(high) if s >= low]
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            c.fail(
                path,
                f"{short_repr(value)} is not allowed; allowed: a power of two, "
                f"{allowed[0]}, {allowed[1]}, ..., {allowed[-1]}",
            )
        return value

    def resolution_key(path: str, key: Any) -> int:
        # YAML reads `4: 128` as an int key; JSON (a search row) gives the string "4"
        if isinstance(key, str) and key.isdigit():
            key = int(key)
        return power_of_two(f"{path}.{str(key)[:40]}", key, 4, MAX_IMAGE_SIZE)

    def widths(path: str, value: Any) -> dict[int, int]:
        if not isinstance(value, Mapping):
            c.fail(
                path,
                f"expected a mapping of resolution to channels (4: 128, 8: 64, ...), got "
                f"{type(value).__name__} {short_repr(value)}",
            )
        before = len(c.problems)
        out: dict[int, int] = {}
        for key, width in value.items():
            res = c.gather(lambda k=key: resolution_key(path, k))
            checked = c.gather(
                lambda k=key, w=width: c.integer(f"{path}.{str(k)[:40]}", w, 1, MAX_CHANNELS)
            )
            if res in out:  # 16 and "16" both given
                c.problems.append((f"{path}.{res}", "given twice; give each resolution once"))
            elif res is not None and checked is not None:
                out[res] = checked
        if len(c.problems) > before:
            c.raise_noted_since(before)
        return dict(sorted(out.items()))

    definition = {
        "kind": KIND,  # the registry sent the definition here by its kind
        "name": field("name", c.label),
        "description": field("description", c.text),
        "reference": field("reference", c.text),
        "image_channels": field(
            "image_channels", lambda p, v: c.integer(p, v, 1, MAX_IMAGE_CHANNELS)
        ),
        "image_size": field(
            "image_size", lambda p, v: power_of_two(p, v, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        ),
        "z_dim": field("z_dim", lambda p, v: c.integer(p, v, 1, MAX_LATENT)),
        "w_dim": field("w_dim", lambda p, v: c.integer(p, v, 1, MAX_LATENT)),
        "mapping_layers": field(
            "mapping_layers", lambda p, v: c.integer(p, v, 1, MAX_MAPPING_LAYERS)
        ),
        "widths": field("widths", widths),
        "ratios": field(
            "ratios",
            lambda p, v: c.choices(p, v, lambda q, w: c.number(q, w, 0.0, 1.0, low_open=True)),
        ),
        "resolutions": field(
            "resolutions",
            lambda p, v: c.choices(
                p, v, lambda q, w: power_of_two(q, w, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
            ),
        ),
    }
    c.raise_problems()
    return definition


def check_buildable(d: dict[str, Any], source: str) -> None:
    """The checks across fields, each problem noted: a width for every resolution the
    generator has and none other, output resolutions it produces up to the image size, the
    full width (ratio 1.0) among the ratios, and no width that rounds to no channel."""
    c = DefinitionChecker(source)
    size = d["image_size"]
    layers = generator_resolutions(size)
    listed = ", ".join(str(r) for r in layers)
    for res in layers:
        if res not in d["widths"]:
            c.problems.append(
                (
                    f"widths.{res}",
                    f"missing: image_size {size} has layers at {listed}; each needs a width",
                )
            )
    for res in d["widths"]:
        if res not in layers:
            c.problems.append(
                (f"widths.{res}", f"no layer at {res} for image_size {size}; allowed: {listed}")
            )
    outputs = [r for r in layers if r >= MIN_IMAGE_SIZE]
    for i, res in enumerate(d["resolutions"]):
        if res > size:
            c.problems.append(
                (
                    f"resolutions[{i}]",
                    f"{res} is above image_size {size}; allowed: "
                    f"{', '.join(str(r) for r in outputs)}",
                )
            )
    if max(d["resolutions"]) < size:
        c.problems.append(
            (
                "resolutions",
                f"{d['resolutions']} stops below image_size {size}: the layers above would "
                f"never run nor train; include {size}, or set image_size to "
                f"{max(d['resolutions'])}",
            )
        )
    if 1.0 not in d["ratios"]:
        c.problems.append(
            (
                "ratios",
                f"{d['ratios']} lacks 1.0: training distils every sub-generator from the full "
                "generator (ratio 1.0); add it",
            )
        )
    low = min(d["ratios"])
    for res, width in d["widths"].items():
        if res in layers and round(width * low) < 1:
            c.problems.append(
                (
                    f"widths.{res}",
                    f"{width} at ratio {low:g} rounds to 0 channels; allowed: at least "
                    f"{_least_width(low)} at this ratio",
                )
            )
    c.raise_problems()


def _least_width(ratio: float) -> int:
    """The smallest width that keeps a channel at `ratio` (round half to even, as `round`)."""
    width = 1
    while round(width * ratio) < 1:
        width += 1
    return width


@register_space_kind(KIND)
def anycost_gan_space_from_definition(raw: Mapping[str, Any], source: str) -> AnycostGANSpace:
    """An AnycostGANSpace from its definition (see the module docstring)."""
    d = parse_definition(raw, source)
    check_buildable(d, source)
    digest = definition_hash(d)
    config = AnycostGANConfig(
        name=data_space_name(d["name"], digest),
        image_channels=d["image_channels"],
        image_size=d["image_size"],
        z_dim=d["z_dim"],
        w_dim=d["w_dim"],
        mapping_layers=d["mapping_layers"],
        widths=dict(d["widths"]),
        ratios=tuple(d["ratios"]),
        resolutions=tuple(d["resolutions"]),
        description=d["description"],
        reference=d["reference"],
    )
    space = AnycostGANSpace(config)
    check_params(space, source, "narrow the widths, or fewer or smaller mapping layers")
    return space
