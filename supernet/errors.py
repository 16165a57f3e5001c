"""Errors that name the bad input, so a user can fix it without reading our code.

All derive from `UserError` (defined in the lowest layer, latency_models, so that its cost
model errors share the base); the doors report these in one line, and nothing else.
"""

from __future__ import annotations

import itertools
from typing import Any

from latency_models.errors import UserError


class InvalidArchError(UserError, ValueError):
    """An arch dict that does not belong to a search space.

    Carries the field, the position inside a list field (None for scalars), the bad value and
    the allowed values, so callers (CLI, search, HTTP API) can report them as they like.
    """

    def __init__(
        self,
        space: str,
        field: str,
        reason: str,
        *,
        position: int | None = None,
        value: Any = None,
        allowed: Any = None,
    ) -> None:
        self.space, self.field, self.reason = space, field, reason
        self.position, self.value, self.allowed = position, value, allowed
        where = f"field {field!r}" + (f" position {position}" if position is not None else "")
        message = f"invalid arch for space {space!r}: {where}: {reason}"
        if allowed is not None:
            message += f"; allowed: {format_choices(allowed)}"
        super().__init__(message)


class UnknownSpaceError(UserError, KeyError):
    def __init__(self, name: str, available: list[str]) -> None:
        self.name, self.available = name, available
        message = f"unknown search space {name!r}; available: {', '.join(available)}"
        if "@" in name:  # the name of a space built from data: only its definition rebuilds it
            message += (
                " (a space defined as data is found by its YAML file or mapping, or rebuilt "
                "from a trained file that stores it, not by its name)"
            )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return str(self.args[0])


class SpaceDefinitionError(UserError, ValueError):
    """A search space given as data (a YAML file or a mapping) that cannot be built: one line
    naming where it came from, the field path (`stages[2].stride`), the value and what is
    allowed or why it cannot build."""

    def __init__(
        self, source: str, field: str, reason: str, more: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.source, self.field, self.reason = source, field, reason
        # Every problem the checker found, the first one included: `nas space validate`
        # lists them all, so a user fixes a file in one pass.
        self.field_problems: tuple[tuple[str, str], ...] = ((field, reason), *more)
        listed = "; ".join(f"{f}: {r}" for f, r in self.field_problems[:3])
        if len(self.field_problems) > 3:  # the one line stays readable; validate lists all
            listed += f"; and {len(self.field_problems) - 3} more problems"
        super().__init__(f"invalid search space {source}: {listed}")

    @property
    def problems(self) -> list[dict[str, str]]:
        """The problems in the shape every user error with several has (a search config's
        too): {"field", "message"}, which the API returns beside the one-line detail."""
        return [{"field": f, "message": r} for f, r in self.field_problems]


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded into the requested supernet (names the first bad key)."""


class PredictorMismatchError(CheckpointError):
    """A predictor fitted on another supernet than the one it is used with."""


class DatasetError(UserError, ValueError):
    """A dataset config or folder that cannot be loaded; the message names the problem."""


class ConfigError(UserError, ValueError):
    """A config (training, GAN training, search) that does not validate; names the field."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "InvalidArchError",
    "PredictorMismatchError",
    "SpaceDefinitionError",
    "UnknownSpaceError",
    "UserError",
    "format_choices",
]


def format_choices(allowed: Any) -> str:
    """Lists of choices as text; long arithmetic runs (resolutions) are shortened."""
    if isinstance(allowed, list | tuple) and len(allowed) > 6:
        steps = {b - a for a, b in itertools.pairwise(allowed)}
        if len(steps) == 1:
            return f"[{allowed[0]}, {allowed[1]}, ..., {allowed[-1]}] (step {steps.pop()})"
    return str(list(allowed) if isinstance(allowed, tuple) else allowed)
