"""Errors of the cost models. Each names the bad input and, where there is a list, the choices."""

from __future__ import annotations

import copyreg
from collections.abc import Iterable


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


class UserError(Exception):
    """Base of every error the user's input caused: a bad arch, config, file, option or id.

    Every package's errors derive from it, so a door (the CLI, the HTTP API) reports exactly
    these in one line and lets anything else (a bug) surface with its traceback.
    """

    def __reduce__(self) -> tuple:
        # Ray and process pools send a worker's error to the driver as a pickle. Exception's
        # own reduce calls cls(*args), but a subclass whose __init__ takes its own arguments
        # (a name and the choices) holds only the message in args: rebuild without __init__,
        # with the message as args and the fields it set.
        return copyreg.__newobj__, (type(self), *self.args), self.__dict__


class HardwareError(UserError, ValueError):
    """Base of every error a user can fix by changing a profile, an option or a spec."""


class UnknownHardwareError(HardwareError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name, self.available = name, list(available)
        super().__init__(
            f"unknown hardware {name!r}; available: {_join(self.available)} "
            "(or the path of a YAML profile)"
        )


class UnknownStackError(HardwareError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name, self.available = name, list(available)
        super().__init__(
            f"unknown stack {name!r}; available: {_join(self.available)} "
            "(or the path of a YAML stack file)"
        )


class ProfileError(HardwareError):
    """A hardware profile file that cannot be read or holds a bad field."""

    def __init__(
        self, source: str, field: str | None, reason: str, allowed: Iterable[object] | None = None
    ) -> None:
        self.source, self.field, self.reason = source, field, reason
        self.allowed = None if allowed is None else list(allowed)
        where = f"field {field!r}: " if field else ""
        message = f"invalid hardware profile {source}: {where}{reason}"
        if self.allowed is not None:
            message += f"; allowed: {_join(self.allowed)}"
        super().__init__(message)


class OptionError(HardwareError):
    """An unknown prediction option, or a value the device does not support (fp8 on an A100)."""

    def __init__(self, device: str, option: str, reason: str, allowed: Iterable[object]) -> None:
        self.device, self.option, self.allowed = device, option, list(allowed)
        super().__init__(
            f"hardware {device!r}: option {option!r}: {reason}; allowed: {_join(self.allowed)}"
        )


class MissingEntryError(HardwareError, KeyError):
    """A look-up table has no entry for a layer: never read as zero."""

    def __init__(self, device: str, key: str, nearest: Iterable[str], context: str = "") -> None:
        self.device, self.key, self.nearest = device, key, list(nearest)
        near = "; nearest keys: " + " | ".join(self.nearest) if self.nearest else ""
        where = f" ({context})" if context else ""
        super().__init__(f"hardware {device!r} has no entry for {key!r}{where}{near}")

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class UnknownNetworkError(HardwareError, KeyError):
    """A reference network name that latency_models.zoo does not hold."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name, self.available = name, list(available)
        super().__init__(f"unknown reference network {name!r}; available: {_join(self.available)}")

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class UnsupportedSpecError(HardwareError):
    """A spec this device model cannot cost (a resolution outside its tables, no blocks, ...)."""


class MeasurementError(HardwareError):
    """A measurement file (CSV) with a missing column or a bad value."""


class SpecError(UserError, ValueError):
    """A NetworkSpec or LayerSpec that is internally inconsistent."""


class TraceError(UserError, ValueError):
    """A torch module that `latency_models.trace()` cannot turn into a NetworkSpec."""
