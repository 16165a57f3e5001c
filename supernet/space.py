"""The search-space interface, and the registry of named presets (timm style)."""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from latency_models import NetworkSpec
from supernet.errors import InvalidArchError, UnknownSpaceError

Arch = dict[str, Any]
RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """Accept a Generator (used as is), a seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10% below `value`.

    The rule MobileNet, once-for-all and MCUNet all use; widths must match theirs exactly.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SearchSpace(ABC):
    """A set of architectures, each a plain JSON dict (an "arch").

    Subclasses define the genes; this base gives the canonical id and the JSON round-trip.
    """

    name: str
    resolution_gene: str = "r"  # the gene that sets the input (or output) resolution

    @abstractmethod
    def sample(self, rng: RngLike = None) -> Arch:
        """A uniformly random arch, in canonical form."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: RngLike = None, prob: float = 0.1) -> Arch:
        """Resample each gene with probability `prob`; returns a new canonical arch."""

    @abstractmethod
    def crossover(self, a: Arch, b: Arch, rng: RngLike = None) -> Arch:
        """Take each gene from `a` or `b` with equal probability; returns a canonical arch."""

    @abstractmethod
    def validate(self, arch: Any) -> Arch:
        """Return a normalized copy of `arch`, or raise InvalidArchError naming the problem."""

    @abstractmethod
    def canonical(self, arch: Arch) -> Arch:
        """The validated arch with genes that do not affect the network set to fixed values."""

    @abstractmethod
    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector (length `encoding_size`), the input of predictors."""

    @property
    @abstractmethod
    def encoding_size(self) -> int: ...

    @abstractmethod
    def to_spec(self, arch: Arch, batch: int = 1) -> NetworkSpec:
        """The network as a latency_models.NetworkSpec."""

    @abstractmethod
    def genes(self) -> list[tuple[str, tuple]]:
        """The arch as named categorical genes (for samplers such as Optuna's NSGA-II):
        [(name, choices), ...]; every arch maps to one value per gene."""

    @abstractmethod
    def from_genes(self, genes: dict[str, Any]) -> Arch:
        """The canonical arch of a full set of gene values (raises InvalidArchError)."""

    @abstractmethod
    def to_genes(self, arch: Arch) -> dict[str, Any]: ...

    @abstractmethod
    def size(self) -> int:
        """How many distinct networks the space holds."""

    @abstractmethod
    def largest(self) -> Arch: ...

    @abstractmethod
    def smallest(self) -> Arch: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The choices of each gene, as JSON-able data (for `nas space list` and docs)."""

    def _check_fields(self, arch: Any, fields: Sequence[str]) -> None:
        """`arch` is a JSON object with exactly `fields` (InvalidArchError names the field)."""
        if not isinstance(arch, Mapping):
            raise InvalidArchError(
                self.name, "<arch>", f"expected a JSON object, got {type(arch).__name__}"
            )
        for key in arch:
            if key not in fields:
                raise InvalidArchError(self.name, str(key), "unknown field", allowed=fields)
        for key in fields:
            if key not in arch:
                raise InvalidArchError(self.name, key, "missing field")

    def input_shape(self, arch: Arch, batch: int = 1) -> tuple[int, ...]:
        """The input of the network `net.extract(arch)` builds (batch first)."""
        raise NotImplementedError(f"space {self.name!r} does not state its input shape")

    def at_resolution(self, arch: Arch, resolution: int) -> Arch:
        """`arch` with its resolution gene set to `resolution` (raises InvalidArchError)."""
        return self.canonical({**arch, self.resolution_gene: resolution})

    def block_cover(self, resolutions: Sequence[int] | None = None) -> list[Arch]:
        """Archs that together contain every distinct block of the space (at `resolutions`,
        default all): what a measured look-up table must time."""
        raise NotImplementedError(f"space {self.name!r} cannot list its distinct blocks")

    def variant(self, channels: int | None = None, classes: int | None = None) -> SearchSpace:
        """The same genes for inputs with `channels` channels and `classes` classes."""
        raise NotImplementedError(f"space {self.name!r} has no variants")

    def arch_id(self, arch: Arch) -> str:
        """A short hash of the canonical JSON: equal networks share it, different ones do not."""
        return self.canonical_id(self.canonical(arch))

    @staticmethod
    def canonical_id(canonical_arch: Arch) -> str:
        """arch_id of an arch already in canonical form (skips validating it again)."""
        text = json.dumps(canonical_arch, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self, arch: Arch) -> str:
        return json.dumps(self.canonical(arch), sort_keys=True, separators=(",", ":"))

    def from_json(self, text: str) -> Arch:
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidArchError(self.name, "<json>", f"not valid JSON ({err})") from None
        return self.validate(arch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


_REGISTRY: dict[str, Callable[[], SearchSpace]] = {}


def register_space(name: str) -> Callable[[Callable[[], SearchSpace]], Callable[[], SearchSpace]]:
    def decorator(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
        if name in _REGISTRY:
            raise ValueError(f"search space {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_spaces() -> list[str]:
    return sorted(_REGISTRY)


_VARIANT = re.compile(r"^(?P<base>[^\[\]]+?)(?:\[(?P<args>[^\[\]]*)\])?$")
VARIANT_KEYS = ("channels", "classes")


def get_space(name: str) -> SearchSpace:
    """A named preset, e.g. "ofa-mbv3-w1.2" (see `list_spaces()`).

    A preset retargeted to other data keeps its genes and changes only its input channels and
    classes: "ofa-mbv3-w1.0[channels=3,classes=10]". That string is the variant's own name, so
    it round-trips through checkpoints and the database.
    """
    if isinstance(name, SearchSpace):
        return name
    match = _VARIANT.match(name.strip())
    base = match["base"] if match else name
    try:
        factory = _REGISTRY[base]
    except KeyError:
        raise UnknownSpaceError(name, list_spaces()) from None
    space = factory()
    if match and match["args"] is not None:
        overrides: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in match["args"].split(","))):
            key, _, value = item.partition("=")
            if key not in VARIANT_KEYS or not value.isdigit() or int(value) < 1:
                raise UnknownSpaceError(
                    name, [f"{base}[channels=N,classes=N]", *list_spaces()]
                ) from None
            overrides[key] = int(value)
        space = space.variant(**overrides)
    return space
