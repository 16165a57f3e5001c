"""The search-space interface, and the registry of named presets (timm style)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from latency_models import NetworkSpec, SpecBatch
from supernet.errors import InvalidArchError, SpaceDefinitionError, UnknownSpaceError

Arch = dict[str, Any]
RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """Accept a Generator (used as is), a seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def arch_hash(arch: Mapping[str, Any]) -> str:
    """A short hash of an arch's JSON (keys sorted): the arch id of a canonical arch."""
    text = json.dumps(arch, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _restore_canonical(items: dict, space_name: str | None, arch_id: str | None) -> CanonicalArch:
    arch = CanonicalArch(items, space_name)
    arch._id = arch_id
    return arch


class CanonicalArch(dict):
    """An arch that the space named `space_name` has validated and put in canonical form.

    To everything else it is the plain dict it holds: `json.dumps`, `==` with plain dicts,
    SQL JSON columns. To its space it is a promise: the arch-taking methods (`canonical`,
    `arch_id`, `to_spec`, `encode`, `plan`, ...) trust it and skip validating it again.
    Pickle, copy and deepcopy keep the class, the space name and the cached id (Ray ships
    archs to actors this way).

    Treat it as a value. Setting, deleting or updating a key drops the promise (`space_name`
    becomes None, so the next use validates it again); editing one of its lists in place is
    not detected, so build a new dict instead (`{**arch, "r": 160}` is a plain dict).
    """

    __slots__ = ("_id", "space_name")

    def __init__(self, items: Mapping[str, Any] = (), space_name: str | None = None) -> None:  # type: ignore[assignment]
        super().__init__(items)
        self.space_name = space_name
        self._id: str | None = None

    @property
    def arch_id(self) -> str:
        """The hash of its JSON, computed once."""
        if self._id is None:
            self._id = arch_hash(self)
        return self._id

    def _drop_trust(self) -> None:
        self.space_name = None
        self._id = None

    def __setitem__(self, key: str, value: Any) -> None:
        self._drop_trust()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._drop_trust()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> CanonicalArch:
        self._drop_trust()
        super().update(other)
        return self

    def clear(self) -> None:
        self._drop_trust()
        super().clear()

    def pop(self, *args: Any) -> Any:
        self._drop_trust()
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self._drop_trust()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._drop_trust()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._drop_trust()
        super().update(*args, **kwargs)

    def __reduce__(self) -> tuple:
        return (_restore_canonical, (dict(self), self.space_name, self._id))


@dataclass(frozen=True)
class ArchField:
    """One field of an arch: a scalar or a list, every position a categorical choice.

    role: "gated" positions change the network only while they are active (a block below
    its stage's depth), which the "controls" fields decide; "free" fields always count.
    """

    name: str
    choices: tuple[tuple, ...]  # the allowed values of each position (one entry for a scalar)
    kind: Literal["int", "float"] = "int"
    scalar: bool = False
    role: Literal["free", "controls", "gated"] = "free"

    @classmethod
    def one(cls, name: str, choices: Sequence, kind: str = "int", role: str = "free") -> ArchField:
        return cls(name, (tuple(choices),), kind, True, role)  # type: ignore[arg-type]

    @classmethod
    def many(
        cls, name: str, choices: Sequence[Sequence], kind: str = "int", role: str = "free"
    ) -> ArchField:
        """A list field; `choices` holds the allowed values of each position."""
        return cls(name, tuple(tuple(c) for c in choices), kind, False, role)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Layout:
    """What the generic methods derive once from `arch_fields()`."""

    fields: tuple[ArchField, ...]
    names: tuple[str, ...]
    allowed: tuple[tuple[frozenset, ...], ...]  # per field, per position
    # (field, position, offset, value -> index, gated) of every one-hot slot, in encoding order
    slots: tuple[tuple[str, int | None, int, dict, bool], ...]
    encoding_size: int
    placeholders: tuple[tuple[str, tuple], ...]  # (gated field, its smallest choice per position)


class SearchSpace(ABC):
    """A set of architectures, each a plain JSON dict (an "arch").

    A space states its arch layout (`arch_fields`: named scalar and list fields of
    categorical choices), which positions are active (`gene_active`), and how to describe an
    arch as a network (`to_spec`). This base derives the rest from those: validation, the
    canonical form, ids, sampling and the genetic operators, genes for samplers, encoding,
    size and the extreme archs. A space overrides one only where its own differs (and says
    why).

    Validated once where it enters; inside, trusted. `validate`, `canonical`, `from_genes`,
    `sample`, `mutate`, `crossover`, `largest` and `smallest` return a `CanonicalArch`; every
    method that takes an arch skips validation for a `CanonicalArch` of this space and
    validates anything else (a plain dict from the CLI, the HTTP API, an SQL row or Optuna's
    parameters) as before. `validate` itself always checks: it is the edge.
    """

    name: str
    resolution_gene: str = "r"  # the gene that sets the input (or output) resolution

    # ----- what a space defines ---------------------------------------------------------------

    @abstractmethod
    def arch_fields(self) -> tuple[ArchField, ...]:
        """The fields of an arch, in order, with the choices of every position."""

    @abstractmethod
    def to_spec(self, arch: Arch, batch: int = 1) -> NetworkSpec:
        """The network as a latency_models.NetworkSpec."""

    def gene_active(self, arch: Arch, field: str, position: int) -> bool:
        """Whether position `position` of the "gated" field `field` changes the network; it
        may read only the "controls" fields of `arch`."""
        return True

    def spec_batch(self, archs: Sequence[Arch], batch: int = 1) -> SpecBatch:
        """The networks of `archs` as one SpecBatch, what cost models read: the same rows as
        `SpecBatch.of([to_spec(a, batch) for a in archs])`. A space whose networks are a
        chain of blocks overrides it to assemble the rows from stored blocks, with no
        NetworkSpec per arch (MBConvSpace does)."""
        return SpecBatch.of([self.to_spec(a, batch) for a in archs])

    # ----- layout -----------------------------------------------------------------------------

    @cached_property
    def _layout(self) -> _Layout:
        fields = tuple(self.arch_fields())
        gated = [f for f in fields if f.role == "gated"]
        others = [f for f in fields if f.role != "gated"]
        order: list[tuple[ArchField, int]] = [
            (f, i)
            for i in range(max((len(f.choices) for f in gated), default=0))
            for f in gated
            if i < len(f.choices)
        ]
        order += [(f, i) for f in others for i in range(len(f.choices))]
        slots, offset = [], 0
        for f, i in order:
            choices = f.choices[i]
            index = {value: k for k, value in enumerate(choices)}
            slots.append((f.name, None if f.scalar else i, offset, index, f.role == "gated"))
            offset += len(choices)
        return _Layout(
            fields=fields,
            names=tuple(f.name for f in fields),
            allowed=tuple(tuple(frozenset(c) for c in f.choices) for f in fields),
            slots=tuple(slots),
            encoding_size=offset,
            placeholders=tuple((f.name, tuple(min(c) for c in f.choices)) for f in gated),
        )

    @property
    def fields(self) -> tuple[str, ...]:
        return self._layout.names

    def _fields_with(self, role: str) -> list[ArchField]:
        return [f for f in self._layout.fields if f.role == role]

    # ----- validation and canonical form ------------------------------------------------------

    def trusted(self, arch: Any) -> bool:
        """`arch` is a CanonicalArch of this space (so it needs no validation)."""
        return type(arch) is CanonicalArch and arch.space_name == self.name

    def validate(self, arch: Any) -> Arch:
        """Check `arch` and return a normalized copy, or raise InvalidArchError naming the
        field, the position, the bad value and the allowed values. Always checks (this is
        the edge); the copy is a CanonicalArch when it is already in canonical form."""
        layout = self._layout
        self._check_fields(arch, layout.names)
        out: Arch = {}
        for f, allowed in zip(layout.fields, layout.allowed, strict=True):
            value = arch[f.name]
            if f.scalar:
                out[f.name] = self._check_value(f, None, value)
                continue
            if not isinstance(value, list | tuple):
                raise InvalidArchError(
                    self.name, f.name, f"expected a list, got {type(value).__name__} {value!r}"
                )
            if len(value) != len(allowed):
                raise InvalidArchError(
                    self.name, f.name, f"expected {len(allowed)} entries, got {len(value)}"
                )
            exact = int if f.kind == "int" else float
            # fast path for the common case; the slow path finds and names the bad entry
            if all(type(v) is exact and v in a for v, a in zip(value, allowed, strict=True)):
                out[f.name] = list(value)
            else:
                out[f.name] = [self._check_value(f, i, v) for i, v in enumerate(value)]
        return out if self._placeholders(out) else CanonicalArch(out, self.name)

    def _check_value(self, f: ArchField, position: int | None, value: Any) -> Any:
        allowed = list(f.choices[0 if position is None else position])
        if f.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                reason = f"value {value!r} is not an integer"
            elif int(value) in allowed:
                return int(value)
            else:
                reason = f"value {value!r} is not allowed"
        else:
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                reason = f"value {value!r} is not a number"
            else:
                for choice in allowed:
                    if abs(float(value) - choice) < 1e-9:
                        return float(choice)
                reason = f"value {value!r} is not allowed"
        raise InvalidArchError(
            self.name, f.name, reason, position=position, value=value, allowed=allowed
        )

    def _placeholders(self, arch: Arch) -> list[tuple[str, int, Any]]:
        """(field, position, fixed value) of the inactive positions not yet at their fixed
        value (the smallest choice): empty when `arch` is canonical."""
        out = []
        for name, lows in self._layout.placeholders:
            values = arch[name]
            for i, low in enumerate(lows):
                if values[i] != low and not self.gene_active(arch, name, i):
                    out.append((name, i, low))
        return out

    def canonical(self, arch: Arch) -> CanonicalArch:
        """The validated arch with genes that do not affect the network set to fixed values."""
        if self.trusted(arch):
            return arch
        out = self.validate(arch)
        if self.trusted(out):
            return out
        for name, i, low in self._placeholders(out):
            out[name][i] = low
        return CanonicalArch(out, self.name)

    def arch_id(self, arch: Arch) -> str:
        """A short hash of the canonical JSON: equal networks share it, different ones do not."""
        return self.canonical(arch).arch_id

    def to_json(self, arch: Arch) -> str:
        return json.dumps(self.canonical(arch), sort_keys=True, separators=(",", ":"))

    def from_json(self, text: str) -> Arch:
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidArchError(self.name, "<json>", f"not valid JSON ({err})") from None
        except RecursionError:  # nested deeper than any arch: refuse, do not crash
            raise InvalidArchError(self.name, "<json>", "nested too deeply to be an arch") from None
        return self.validate(arch)

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

    # ----- sampling and genetic operators -----------------------------------------------------
    # The order of the draws is part of the contract: a seed gives the same archs as before
    # the generic versions existed (fields in order; in mutate and crossover the controlling
    # fields first, then the gated ones, then the free ones).

    @staticmethod
    def _pick(rng: np.random.Generator, choices: Sequence) -> Any:
        return choices[int(rng.integers(len(choices)))]

    def sample(self, rng: RngLike = None) -> CanonicalArch:
        """A uniformly random value at every position, in canonical form."""
        rng = as_rng(rng)
        arch: Arch = {}
        for f in self._layout.fields:
            values = [self._pick(rng, c) for c in f.choices]
            arch[f.name] = values[0] if f.scalar else values
        return self.canonical(arch)

    def mutate(self, arch: Arch, rng: RngLike = None, prob: float = 0.1) -> CanonicalArch:
        """Resample each gene with probability `prob`; returns a new canonical arch.

        A position switched on by a controlling gene (a block of a deeper stage) gets a fresh
        value: the parent's value there is only the canonical placeholder, and keeping it
        would bias the search.
        """
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation prob must be in [0, 1], got {prob}")
        rng = as_rng(rng)
        parent = self.canonical(arch)
        child: Arch = {k: list(v) if isinstance(v, list) else v for k, v in parent.items()}

        def resample(f: ArchField, i: int) -> None:
            value = self._pick(rng, f.choices[i])
            if f.scalar:
                child[f.name] = value
            else:
                child[f.name][i] = value

        for f in self._fields_with("controls"):
            for i in range(len(f.choices)):
                if rng.random() < prob:
                    resample(f, i)
        gated = self._fields_with("gated")
        for i in range(max((len(f.choices) for f in gated), default=0)):
            for f in gated:
                if i >= len(f.choices):
                    continue
                newly_active = self.gene_active(child, f.name, i) and not self.gene_active(
                    parent, f.name, i
                )
                if newly_active or rng.random() < prob:
                    resample(f, i)
        for f in self._fields_with("free"):
            for i in range(len(f.choices)):
                if rng.random() < prob:
                    resample(f, i)
        return self.canonical(child)

    def crossover(self, a: Arch, b: Arch, rng: RngLike = None) -> CanonicalArch:
        """Take each gene from `a` or `b` with equal probability; returns a canonical arch.
        A gated gene comes from a parent in which it is active, so it was really chosen."""
        rng = as_rng(rng)
        parents = (self.canonical(a), self.canonical(b))
        child: Arch = {}

        def take(f: ArchField, donors: Sequence[Arch], i: int) -> Any:
            donor = donors[int(rng.integers(len(donors)))]
            return donor[f.name] if f.scalar else donor[f.name][i]

        for f in self._fields_with("controls"):
            values = [take(f, parents, i) for i in range(len(f.choices))]
            child[f.name] = values[0] if f.scalar else values
        for f in self._fields_with("gated"):
            values = []
            for i in range(len(f.choices)):
                donors = [p for p in parents if self.gene_active(p, f.name, i)] or parents
                values.append(take(f, donors, i))
            child[f.name] = values[0] if f.scalar else values
        for f in self._fields_with("free"):
            values = [take(f, parents, i) for i in range(len(f.choices))]
            child[f.name] = values[0] if f.scalar else values
        return self.canonical({name: child[name] for name in self._layout.names})

    # ----- genes for samplers -----------------------------------------------------------------

    def genes(self) -> list[tuple[str, tuple]]:
        """The arch as named categorical genes (for samplers such as Optuna's NSGA-II):
        [(name, choices), ...]; every arch maps to one value per gene. A scalar field is one
        gene, a list field one gene per position ("ch.3")."""
        out = []
        for f in self._layout.fields:
            if f.scalar:
                out.append((f.name, f.choices[0]))
            else:
                out += [(f"{f.name}.{i}", c) for i, c in enumerate(f.choices)]
        return out

    def from_genes(self, genes: dict[str, Any]) -> CanonicalArch:
        """The canonical arch of a full set of gene values (raises InvalidArchError)."""
        try:
            arch = self._arch_of_genes(genes)
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise InvalidArchError(
                self.name, "<genes>", f"incomplete or malformed: {err}"
            ) from None
        return self.canonical(arch)

    def to_genes(self, arch: Arch) -> dict[str, Any]:
        return self._genes_of_arch(self.canonical(arch))

    def _arch_of_genes(self, genes: Mapping[str, Any]) -> Arch:
        """The (unvalidated) arch of gene values; the inverse of `_genes_of_arch`."""
        arch: Arch = {}
        for f in self._layout.fields:
            if f.scalar:
                arch[f.name] = genes[f.name]
            else:
                arch[f.name] = [genes[f"{f.name}.{i}"] for i in range(len(f.choices))]
        return arch

    def _genes_of_arch(self, arch: Arch) -> dict[str, Any]:
        genes: dict[str, Any] = {}
        for f in self._layout.fields:
            if f.scalar:
                genes[f.name] = arch[f.name]
            else:
                genes.update({f"{f.name}.{i}": v for i, v in enumerate(arch[f.name])})
        return genes

    # ----- predictors, sizes ------------------------------------------------------------------

    @property
    def encoding_size(self) -> int:
        return self._layout.encoding_size

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector (length `encoding_size`), the input of predictors:
        one-hot genes, the gated ones interleaved by position first (all zeros where
        inactive, as once-for-all does), then the others in field order."""
        arch = self.canonical(arch)
        vec = np.zeros(self._layout.encoding_size, dtype=np.float32)
        for name, i, offset, index, gated in self._layout.slots:
            if i is None:
                vec[offset + index[arch[name]]] = 1.0
            elif not gated or self.gene_active(arch, name, i):
                vec[offset + index[arch[name][i]]] = 1.0
        return vec

    def size(self) -> int:
        """How many distinct networks the space holds: over every value of the controlling
        genes, the product of the choices of the active positions."""
        controls = [(f, i) for f in self._fields_with("controls") for i in range(len(f.choices))]
        gated = self._fields_with("gated")
        total = 0
        for values in itertools.product(*(f.choices[i] for f, i in controls)):
            arch: Arch = {f.name: [None] * len(f.choices) for f, _ in controls}
            for (f, i), value in zip(controls, values, strict=True):
                if f.scalar:
                    arch[f.name] = value
                else:
                    arch[f.name][i] = value
            count = 1
            for f in gated:
                for i, choices in enumerate(f.choices):
                    if self.gene_active(arch, f.name, i):
                        count *= len(choices)
            total += count
        for f in self._fields_with("free"):
            for choices in f.choices:
                total *= len(choices)
        return total

    def _extreme(self, pick: Callable[[Sequence], Any]) -> CanonicalArch:
        arch: Arch = {}
        for f in self._layout.fields:
            values = [pick(c) for c in f.choices]
            arch[f.name] = values[0] if f.scalar else values
        return self.canonical(arch)

    def largest(self) -> CanonicalArch:
        return self._extreme(max)

    def smallest(self) -> CanonicalArch:
        return self._extreme(min)

    def describe_genes(self) -> dict[str, Any]:
        """The choices of each field, as JSON-able data."""
        out: dict[str, Any] = {}
        for f in self._layout.fields:
            if f.scalar:
                out[f.name] = {"choices": list(f.choices[0])}
            elif len(set(f.choices)) == 1:
                out[f.name] = {"length": len(f.choices), "choices": list(f.choices[0])}
            else:
                out[f.name] = {"length": len(f.choices), "choices": [list(c) for c in f.choices]}
        return out

    def describe(self) -> dict[str, Any]:
        """The choices of each gene, as JSON-able data (for `nas space list` and docs)."""
        return {"name": self.name, "genes": self.describe_genes(), "size": self.size()}

    # ----- optional -----------------------------------------------------------------------

    def input_shape(self, arch: Arch, batch: int = 1) -> tuple[int, ...]:
        """The input of the network `net.extract(arch)` builds (batch first)."""
        raise NotImplementedError(f"space {self.name!r} does not state its input shape")

    def at_resolution(self, arch: Arch, resolution: int) -> CanonicalArch:
        """`arch` with its resolution gene set to `resolution` (raises InvalidArchError)."""
        return self.canonical({**arch, self.resolution_gene: resolution})

    def block_cover(self, resolutions: Sequence[int] | None = None) -> list[Arch]:
        """Archs that together contain every distinct block of the space (at `resolutions`,
        default all): what a measured look-up table must time."""
        raise NotImplementedError(f"space {self.name!r} cannot list its distinct blocks")

    def variant(self, channels: int | None = None, classes: int | None = None) -> SearchSpace:
        """The same genes for inputs with `channels` channels and `classes` classes."""
        raise NotImplementedError(f"space {self.name!r} has no variants")

    # ----- the space as data ------------------------------------------------------------

    @property
    def label(self) -> str:
        """The name without the definition hash a space from data carries (`my-space`)."""
        return self.name.split("@", 1)[0]

    def definition(self) -> dict[str, Any]:
        """The space's full definition as JSON-able data, in canonical form (every field
        set, choice lists sorted): `get_space(definition)` builds the same space. Saved in
        trained files so that they describe their own space."""
        raise NotImplementedError(f"space {self.name!r} cannot be written as data")

    @property
    def definition_hash(self) -> str:
        """The SHA-256 of the definition's network fields: equal for spaces that build the
        same network, whatever their name or description."""
        return definition_hash(self.definition())

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


# ----- spaces given as data: a YAML file or a mapping, optionally over a preset ----------------

# Fields of a definition that name or describe a space without changing its network.
LABEL_FIELDS = ("name", "description", "reference")
DEFAULT_KIND = "mbconv"
SpaceSpec = str | os.PathLike | Mapping[str, Any] | SearchSpace
DefinitionParser = Callable[[Mapping[str, Any], str], SearchSpace]
_KINDS: dict[str, DefinitionParser] = {}


def register_space_kind(kind: str) -> Callable[[DefinitionParser], DefinitionParser]:
    """Register the parser of one kind of space definition (`kind:` in the data)."""

    def decorator(parser: DefinitionParser) -> DefinitionParser:
        if kind in _KINDS:
            raise ValueError(f"space kind {kind!r} is registered twice")
        _KINDS[kind] = parser
        return parser

    return decorator


def definition_hash(definition: Mapping[str, Any]) -> str:
    """SHA-256 of a canonical definition's JSON without its labels (`LABEL_FIELDS`)."""
    network = {k: v for k, v in definition.items() if k not in LABEL_FIELDS}
    text = json.dumps(network, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or os.sep in spec


def space_from_file(path: str | os.PathLike) -> SearchSpace:
    """A space defined in a YAML file (see `space_from_definition`)."""
    import yaml  # here: most processes never read a space file

    source = str(path)
    try:
        text = open(path, encoding="utf-8").read()  # noqa: SIM115 (closed on return)
    except FileNotFoundError:
        raise SpaceDefinitionError(source, "<file>", "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpaceDefinitionError(source, "<file>", f"cannot read it ({err})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())  # one line
        raise SpaceDefinitionError(source, "<file>", f"not valid YAML: {reason}") from None
    except RecursionError:
        raise SpaceDefinitionError(source, "<file>", "nested too deeply") from None
    return space_from_definition(raw, source)


def space_from_definition(raw: Any, source: str = "<mapping>") -> SearchSpace:
    """A space from its definition as data: every field of its kind's config, or `base: <a
    preset name>` and the fields that differ from that preset. SpaceDefinitionError (one
    line: the field path, the value, what is allowed) for anything that cannot build."""
    if not isinstance(raw, Mapping):
        raise SpaceDefinitionError(
            source, "<root>", f"expected a mapping of fields, got {type(raw).__name__}"
        )
    definition = dict(raw)
    if "base" in definition:
        base = definition.pop("base")
        if not isinstance(base, str) or _looks_like_path(base):
            raise SpaceDefinitionError(
                source, "base", f"{str(base)[:80]!r} is not a preset name; allowed: {list_spaces()}"
            )
        try:
            base_space = get_space(base)
        except UnknownSpaceError:
            raise SpaceDefinitionError(
                source, "base", f"unknown preset {base[:80]!r}; allowed: {list_spaces()}"
            ) from None
        try:
            inherited = base_space.definition()
        except NotImplementedError as err:
            raise SpaceDefinitionError(source, "base", str(err)) from None
        definition = {**inherited, **definition}
    kind = definition.get("kind", DEFAULT_KIND)
    if not isinstance(kind, str) or kind not in _KINDS:
        raise SpaceDefinitionError(
            source, "kind", f"{str(kind)[:80]!r} is not a kind of space; allowed: {sorted(_KINDS)}"
        )
    try:
        return _KINDS[kind](definition, source)
    except SpaceDefinitionError as err:
        unknown = [f for f, reason in err.field_problems if reason.startswith("unknown field")]
        if "kind" in definition or not any(f.isidentifier() for f in unknown):
            raise
        # Fields of another kind, read as the default kind's: say so first.
        raise SpaceDefinitionError(
            source,
            "kind",
            f"not given, so {DEFAULT_KIND!r} was assumed; allowed: {sorted(_KINDS)}",
            err.field_problems,
        ) from None


def data_space_name(label: str, digest: str) -> str:
    """The name of a space built from data: its label where that names a preset (or a
    preset's variant) with the same network, so presets keep their names when rebuilt from
    a trained file; else the label and the hash, `my-space@1a2b3c4d`, so that two spaces
    that share a label but not a network never share a name (arch trust goes by name)."""
    match = _VARIANT.match(label)
    if match and match["base"] in _REGISTRY:
        try:
            if get_space(label).definition_hash == digest:
                return label
        except (UnknownSpaceError, NotImplementedError):
            pass
    return f"{label}@{digest[:8]}"


def space_reference(space: SearchSpace) -> str | dict[str, Any]:
    """What a record (a search row, a trained file) keeps to find `space` again: its name
    where the registry rebuilds it from that, else its full definition."""
    if "@" not in space.name:
        return space.name
    return space.definition()


def saved_space(data: Mapping[str, Any]) -> SearchSpace:
    """The space of a saved file's dict (a trained supernet, a predictor): rebuilt from its
    stored definition where it has one (the space need not be registered, nor its YAML
    file present), else by its name (files written before spaces were data)."""
    definition = data.get("space_definition")
    if definition is None:
        return get_space(data["space"])
    space = space_from_definition(definition, f"stored in the file (space {data['space']!r})")
    expected = data.get("space_hash")
    if expected is not None and expected != space.definition_hash:
        raise SpaceDefinitionError(
            f"stored in the file (space {data['space']!r})",
            "space_hash",
            f"{expected[:12]}... does not match its definition's {space.definition_hash[:12]}...",
        )
    return space


def space_record(space: SearchSpace) -> dict[str, Any]:
    """The fields a saved file keeps about its space: its name, and where the space can be
    written as data, its definition and that definition's hash (see `saved_space`)."""
    try:
        definition = space.definition()
    except NotImplementedError:
        return {"space": space.name}
    return {
        "space": space.name,
        "space_definition": definition,
        "space_hash": definition_hash(definition),
    }


def same_space(a: SearchSpace, b: SearchSpace) -> bool:
    """Whether two spaces build the same network: equal definition hashes where both can be
    written as data, else equal names."""
    try:
        return a.definition_hash == b.definition_hash
    except NotImplementedError:
        return a.name == b.name


_VARIANT = re.compile(r"^(?P<base>[^\[\]]+?)(?:\[(?P<args>[^\[\]]*)\])?$")
VARIANT_KEYS = ("channels", "classes")


def get_space(name: SpaceSpec) -> SearchSpace:
    """The one way to get a space: a named preset, e.g. "ofa-mbv3-w1.2" (see
    `list_spaces()`); a path to a YAML file defining one; or that definition as a mapping
    (see `space_from_definition`: every field, or a `base` preset and the fields that differ).

    A preset retargeted to other data keeps its genes and changes only its input channels and
    classes: "ofa-mbv3-w1.0[channels=3,classes=10]". That string is the variant's own name, so
    it round-trips through checkpoints and the database.
    """
    if isinstance(name, SearchSpace):
        return name
    if isinstance(name, Mapping):
        return space_from_definition(name, "<mapping>")
    if isinstance(name, os.PathLike) or (isinstance(name, str) and _looks_like_path(name)):
        return space_from_file(name)
    if not isinstance(name, str):
        raise SpaceDefinitionError(
            "<space>",
            "space",
            f"expected a preset name, a path to a YAML file or a mapping, got "
            f"{type(name).__name__}",
        )
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
