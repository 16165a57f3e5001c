"""What every kind of space definition shares: the checker that reads one field by field.

A kind (supernet.mbconv.definition, supernet.anycost.definition) states its schema and checks
each field through a `DefinitionChecker`: a bad field raises a SpaceDefinitionError naming its
path (`stages[2].stride`), the value and what is allowed, and `gather` notes it and goes on, so
the error carries every problem found and a user fixes a file in one pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from supernet.errors import SpaceDefinitionError
from supernet.io import short_repr
from supernet.space import SearchSpace

# A space's label: it becomes part of its name (`label@hash8`), so no '@'.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-\[\]=,]{0,79}$")
MAX_PARAMS = 1_000_000_000  # the largest subnet (= the supernet's weights): 4 GB in float32
T = TypeVar("T")


class DefinitionChecker:
    """Reads one definition; each method returns the checked value or raises, naming the
    field path. `gather` runs one field's check and notes its problem instead, so the other
    fields are still checked; `raise_problems` then raises them all at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, reason: str) -> NoReturn:
        raise SpaceDefinitionError(self.source, path, reason)

    def gather(self, check: Callable[[], T]) -> T | None:
        """The checked value, or None after noting its problems."""
        try:
            return check()
        except SpaceDefinitionError as err:
            self.problems.extend(err.field_problems)
            return None

    def raise_problems(self) -> None:
        if self.problems:
            (field, reason), *more = self.problems
            raise SpaceDefinitionError(self.source, field, reason, tuple(more))

    def fields(self, path: str, raw: Any, allowed: Sequence[str], defaults: dict) -> dict:
        """The mapping with its defaults filled; every unknown or missing field is noted, and
        a missing one is left out."""
        where = path or "<root>"
        if not isinstance(raw, Mapping):
            self.fail(where, f"expected a mapping, got {type(raw).__name__} {short_repr(raw)}")
        for key in raw:
            if key not in allowed:
                self.problems.append(
                    (
                        f"{path}.{key}" if path else str(key)[:80],
                        f"unknown field; allowed: {', '.join(allowed)}",
                    )
                )
        out = {**defaults, **raw}
        for key in allowed:
            if key not in out:
                self.problems.append((f"{path}.{key}" if path else key, "missing field"))
        return {key: out[key] for key in allowed if key in out}

    def label(self, path: str, value: Any) -> str:
        """A space's name (its label: a space from data is named `label@hash8`)."""
        if not isinstance(value, str) or not NAME.match(value):
            self.fail(
                path,
                f"{short_repr(value)} is not a name: letters, digits and . _ - [ ] = , "
                "(at most 80, no '@')",
            )
        return value

    def integer(self, path: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"{short_repr(value)} is not an integer; allowed: {low}..{high}")
        if not low <= value <= high:
            self.fail(path, f"{short_repr(value)} is out of range; allowed: {low}..{high}")
        return value

    def number(self, path: str, value: Any, low: float, high: float, low_open: bool) -> float:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"{short_repr(value)} is not a number; allowed: {bounds}")
        inside = (low < value if low_open else low <= value) and value <= high
        if not (math.isfinite(value) and inside):
            self.fail(path, f"{short_repr(value)} is out of range; allowed: {bounds}")
        return float(value)

    def one_of(self, path: str, value: Any, allowed: Sequence[Any]) -> Any:
        if isinstance(value, bool) or not isinstance(value, str) or value not in allowed:
            self.fail(path, f"{short_repr(value)} is not allowed; allowed: {list(allowed)}")
        return value

    def flag(self, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"{short_repr(value)} is not a boolean; allowed: true, false")
        return value

    def text(self, path: str, value: Any, limit: int = 1000) -> str:
        if not isinstance(value, str) or len(value) > limit:
            self.fail(path, f"{short_repr(value)} is not a text of at most {limit} characters")
        return value

    def items(self, path: str, value: Any, check: Callable[[str, Any], Any]) -> list[Any]:
        """A non-empty list, each item checked (`path[i]`); every bad item is noted before
        the list is refused."""
        if not isinstance(value, list | tuple):
            self.fail(path, f"expected a list, got {type(value).__name__} {short_repr(value)}")
        if not value:
            self.fail(path, "the list is empty; give at least one value")
        before = len(self.problems)
        checked = [
            self.gather(lambda i=i, v=v: check(f"{path}[{i}]", v)) for i, v in enumerate(value)
        ]
        if len(self.problems) > before:
            self.raise_noted_since(before)
        return checked

    def raise_noted_since(self, before: int) -> NoReturn:
        """Raises the problems noted since `before` (taking them off the list, since the
        caller's `gather` notes them again)."""
        (field, reason), *more = self.problems[before:]
        del self.problems[before:]
        raise SpaceDefinitionError(self.source, field, reason, tuple(more))

    def choices(self, path: str, value: Any, check: Callable[[str, Any], Any]) -> list[Any]:
        """A choice list: order and repeats do not change the space, so sorted and unique."""
        return sorted(set(self.items(path, value, check)))


def check_params(space: SearchSpace, source: str, advice: str) -> None:
    """Refuse a space whose largest subnet (its supernet's weights) is over MAX_PARAMS: it
    would fail to allocate, or train for ever, long after the file was accepted."""
    params = space.to_spec(space.largest()).params
    if params > MAX_PARAMS:
        raise SpaceDefinitionError(
            source,
            "<space>",
            f"its largest subnet has {params / 1e6:,.0f}M parameters; allowed: at most "
            f"{MAX_PARAMS / 1e6:,.0f}M ({advice})",
        )
