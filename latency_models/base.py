"""The one interface every device model implements, and the reader that validates profiles.

A device model is built from a profile (a YAML mapping). It sees only NetworkSpecs:

    cost  = model.predict(spec, **options)       # {"latency_ms": ..., "macs": ..., ...}
    costs = model.predict_many(specs, **options)  # one such dict per spec
    cols  = model.predict_arrays(specs)           # {"latency_ms": np.ndarray, ...}, fastest
    cost  = model.predict(spec, coverage=0.9)     # + latency_ms_low, latency_ms_high, ...

Subclasses implement `_columns`, which costs a whole SpecBatch at once with numpy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from latency_models.arrays import SpecBatch
from latency_models.errors import HardwareError, OptionError, ProfileError
from latency_models.spec import NetworkSpec
from latency_models.uncertainty import Residuals, bound_keys, check_coverage, read_uncertainty

_MISSING: Any = object()


class Reader:
    """Typed access to one mapping of a profile; every error names the file and the field."""

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ProfileError(
                source, prefix.rstrip(".") or None, f"expected a mapping, got {_type(data)}"
            )
        self.data, self.source, self.prefix = data, source, prefix

    def path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def error(self, key: str, reason: str, allowed: Iterable[object] | None = None) -> ProfileError:
        return ProfileError(self.source, self.path(key), reason, allowed)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "missing")
            return default
        return self.data[key]

    def only(self, allowed: Iterable[str]) -> None:
        allowed = sorted(allowed)
        for key in self.data:
            if key not in allowed:
                raise self.error(str(key), "unknown field", allowed)

    def number(
        self, key: str, default: Any = _MISSING, *, positive: bool = False, minimum: float = 0.0
    ) -> float:
        value = self.raw(key, default)
        return self._check_number(key, value, positive, minimum)

    def _check_number(self, key: str, value: Any, positive: bool, minimum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_type(value)} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value}")
        if positive and value <= 0:
            raise self.error(key, f"must be > 0, got {value}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int = 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_type(value)} {value!r}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def string(
        self, key: str, default: Any = _MISSING, choices: Iterable[str] | None = None
    ) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_type(value)} {value!r}")
        if choices is not None and value not in (choices := list(choices)):
            raise self.error(key, f"value {value!r} is not allowed", choices)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def mapping(self, key: str, default: Any = _MISSING) -> Reader:
        value = self.raw(key, default)
        return Reader(value, self.source, self.path(key) + ".")

    def numbers(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        allowed: Iterable[str] | None = None,
        required: Iterable[str] = (),
        positive: bool = True,
    ) -> dict[str, float]:
        """A mapping of names to numbers, e.g. peak_tflops: {fp16: 312, ...}."""
        sub = self.mapping(key, default)
        if allowed is not None:
            sub.only(allowed)
        for name in required:
            if name not in sub.data:
                raise sub.error(name, "missing")
        if not sub.data:
            raise self.error(key, "must name at least one entry", allowed)
        return {str(k): sub.number(str(k), positive=positive) for k in sub.data}


def _type(value: Any) -> str:
    return type(value).__name__


@dataclass(frozen=True)
class Fit:
    """The outcome of fitting a device model to measurements."""

    profile: dict[str, Any]  # the new profile, ready to write as YAML
    before: dict[str, float]  # error figures of the old profile, e.g. {"latency_ms_mape": 0.31}
    after: dict[str, float]


class CostModel(ABC):
    """A device's cost model. Subclasses set `kind` and implement `_columns`."""

    kind: ClassVar[str]
    description_of_kind: ClassVar[str]
    # Metrics that are definitional for this kind (a memory plan, a flash image): their
    # intervals have zero width. MACs and params are exact everywhere and carry no bounds.
    exact_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        self.name, self.profile, self.source = name, dict(profile), source
        self.files: list[Path] = [Path(source)]  # what it was read from (tables add theirs)
        reader = Reader(profile, source)
        self.description = reader.string("description", "")
        # metric -> residuals of rows the model did not fit (latency_models.uncertainty)
        self.uncertainty: dict[str, Residuals] = read_uncertainty(
            profile.get("uncertainty"), source
        )

    # ----- what the device reports -----------------------------------------------------------

    @property
    @abstractmethod
    def metrics(self) -> tuple[str, ...]:
        """Names of the values `predict` returns (the metrics constraints may name)."""

    def options(self) -> dict[str, tuple[Any, ...]]:
        """Per-call options and their allowed values; the first value is the default."""
        return {}

    def input_resolutions(self) -> tuple[int, int] | None:
        """The input resolutions (square, inclusive) this model can cost, or None for any:
        a search restricts its space to what every target device can cost."""
        return None

    def summary(self) -> dict[str, Any]:
        """What `nas hardware show` prints (subclasses add their key parameters)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "metrics": list(self.metrics),
            "options": {k: list(v) for k, v in self.options().items()},
            "source": self.source,
        }

    # ----- prediction ------------------------------------------------------------------------

    def predict(
        self, spec: NetworkSpec, coverage: float | None = None, **options: Any
    ) -> dict[str, float | int]:
        return self.predict_many([spec], coverage, **options)[0]

    def predict_many(
        self, specs: Sequence[NetworkSpec], coverage: float | None = None, **options: Any
    ) -> list[dict[str, float | int]]:
        columns = self.predict_arrays(specs, coverage, **options)
        names = list(columns)
        values = [columns[n].tolist() for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]

    def predict_arrays(
        self,
        specs: Sequence[NetworkSpec] | SpecBatch,
        coverage: float | None = None,
        **options: Any,
    ) -> dict[str, np.ndarray]:
        """Every metric as one array over `specs` (no per-spec dicts: the fastest form).
        `specs` may be a SpecBatch already built (a space assembles a generation's without
        any NetworkSpec: SearchSpace.spec_batch).

        With a `coverage` (0.9: a 90% interval), each predicted metric whose uncertainty
        the profile states also gets `METRIC_low` and `METRIC_high`; a metric without one
        gets no bounds (see `interval_metrics`)."""
        opts = self.check_options(options)
        batch = specs if isinstance(specs, SpecBatch) else SpecBatch.of(_as_specs(specs))
        columns = self._columns(batch, opts)
        out = {"latency_ms": columns.pop("latency_ms")}
        out["macs"] = batch.macs
        out["params"] = batch.params
        out.update(columns)
        if coverage is not None:
            coverage = check_coverage(self.name, coverage)
            for metric in [m for m in out if m not in ("macs", "params")]:
                residuals = self.residuals(metric, batch, opts)
                if residuals is not None:
                    low, high = bound_keys(metric)
                    out[low], out[high] = residuals.bounds(out[metric], coverage)
        return out

    def residuals(
        self, metric: str, batch: SpecBatch, options: Mapping[str, Any]
    ) -> Residuals | None:
        """The residuals that bound `metric` for this batch and these options, or None when
        the profile states none. Kinds whose error depends on the setting (a GPU at batch 1
        against batch 64) pick among theirs here."""
        if metric in self.exact_metrics:
            return Residuals.exact(f"{metric} is definitional on {self.kind} devices")
        return self.uncertainty.get(metric)

    def interval_metrics(self) -> tuple[str, ...]:
        """The metrics a prediction can bound (those with stated residuals, or exact)."""
        return tuple(m for m in self.metrics if m in self.exact_metrics or m in self.uncertainty)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        allowed = self.options()
        for key, value in options.items():
            if key not in allowed:
                if key == "batch":
                    raise OptionError(
                        self.name,
                        key,
                        "batch comes from the spec; use spec.with_batch(n)",
                        sorted(allowed) or ["(none)"],
                    )
                raise OptionError(
                    self.name,
                    key,
                    f"not an option of {self.kind} devices",
                    sorted(allowed) or ["(none)"],
                )
            if value not in allowed[key]:
                raise OptionError(self.name, key, f"value {value!r} is not supported", allowed[key])
        return {key: options.get(key, choices[0]) for key, choices in allowed.items()}

    @abstractmethod
    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Metrics per spec; must include latency_ms (macs and params are added by the base)."""

    # ----- calibration -----------------------------------------------------------------------

    def fit(
        self, specs: Sequence[NetworkSpec], measured: Mapping[str, np.ndarray], **options: Any
    ) -> Fit:
        """Fit this model's free parameters to measurements (metric name -> one value per spec)
        and return a new profile. Kinds without free parameters raise HardwareError."""
        raise HardwareError(f"hardware {self.name!r}: {self.kind} profiles cannot be calibrated")


def _as_specs(specs: Sequence[NetworkSpec]) -> Sequence[NetworkSpec]:
    if isinstance(specs, NetworkSpec):
        return [specs]
    if not isinstance(specs, list | tuple):
        specs = list(specs)  # a generator, say
    for s in specs:
        if not isinstance(s, NetworkSpec):
            raise TypeError(f"expected NetworkSpec objects, got {type(s).__name__}")
    return specs


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    return float(np.mean(np.abs(predicted - measured) / measured))


__all__ = ["CostModel", "Fit", "Reader", "mape"]
