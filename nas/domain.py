"""The part of a search space every target device can cost.

A measured look-up table covers only the input resolutions it was measured at (the Note10
tables: 160 to 224), while once-for-all's spaces reach down to 128. A search with such a
target restricts its space's resolution gene to the values every target can cost: the
sampler draws only those, and `nas search show` states the restriction. A config whose
targets share no resolution is refused before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import latency_models as lm
from nas.errors import SearchConfigError, UserError
from supernet.space import SearchSpace


@dataclass(frozen=True)
class SearchDomain:
    """Allowed values of the space's resolution gene, and the devices that set them."""

    gene: str
    choices: tuple[int, ...]
    reasons: dict[str, str] = field(default_factory=dict)  # device -> why

    def to_dict(self) -> dict[str, object]:
        return {"gene": self.gene, "choices": list(self.choices), "restricted_by": self.reasons}


def _input_resolution(space: SearchSpace, value: int) -> int | None:
    """The network's input resolution when the resolution gene is `value`; None when the
    gene does not set an image input (a generator's input is its latent)."""
    shape = space.input_shape(space.at_resolution(space.smallest(), value))
    return shape[-1] if len(shape) == 4 and shape[-1] == shape[-2] else None


def search_domain(
    space: SearchSpace, devices: Mapping[str, lm.CostModel], source: str = "<config>"
) -> SearchDomain | None:
    """The restriction the devices put on `space`, or None when every arch can be costed."""
    gene = space.resolution_gene
    values = tuple(dict(space.genes()).get(gene, ()))
    if not values:
        return None
    allowed, reasons = list(values), {}
    for name, hw in devices.items():
        covered = hw.input_resolutions()
        if covered is None:
            continue
        low, high = covered
        kept = [
            v for v in allowed if (r := _input_resolution(space, v)) is None or low <= r <= high
        ]
        if kept != allowed:
            reasons[name] = f"{name} can cost input resolutions {low}..{high} only"
        allowed = kept
    if not reasons:
        return None
    if not allowed:
        message = (
            f"no {gene} of space {space.name!r} ({values[0]}..{values[-1]}) can be costed by "
            "every target: " + "; ".join(reasons.values())
        )
        raise SearchConfigError(
            f"invalid search config {source}: targets: {message}",
            [{"field": "targets", "message": message}],
        )
    return SearchDomain(gene, tuple(allowed), reasons)


def cost_problem(
    space: SearchSpace,
    name: str,
    hw: lm.CostModel,
    batch: int = 1,
    options: Mapping[str, Any] | None = None,
) -> str | None:
    """Why device `name` cannot cost `space` (at this batch, with these options), or None.
    A look-up table holds the blocks it was measured on: its model must cost the space's
    smallest and largest archs, at the ends of the resolutions it covers, or a search on it
    fails at its first generation."""
    try:
        domain = search_domain(space, {name: hw})
    except SearchConfigError as err:
        return err.problems[0]["message"]
    small, large = space.smallest(), space.largest()
    if domain is not None:
        small = space.at_resolution(small, domain.choices[0])
        large = space.at_resolution(large, domain.choices[-1])
    try:
        for arch in (small, large):
            hw.predict(space.to_spec(arch, batch), **dict(options or {}))
    except UserError as err:
        return f"{name} cannot cost space {space.name!r}: {err}"
    return None
