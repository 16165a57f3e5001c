"""Prediction intervals: how sure a cost model is, from the residuals of rows it did not fit.

A model's error is multiplicative (a latency off by 10% at 1 ms and at 100 ms alike), so a
metric's residuals are `log(measured / predicted)`. At a coverage c (0.9 by default) the
interval of a prediction p is `[p * exp(lo), p * exp(hi)]`:

* **split conformal** when there are enough held-out residuals for the c-quantile to be a
  real row (n >= 2 / (1 - c) - 1: 19 at 90%): lo and hi are the order statistics at
  floor((n + 1)(1 - c) / 2) and ceil((n + 1)(1 + c) / 2), each tail at (1 - c) / 2, so a
  model that runs slow is not given a symmetric band;
* **a Student-t prediction interval** on the log ratios otherwise (mean +- t * s *
  sqrt(1 + 1/n)), which widens honestly as n shrinks. Residuals of the rows a model was
  fitted on (`fitted_parameters` > 0: an adaptation to 10-20 measurements) are in-sample and
  too small: their spread is taken with n - p degrees of freedom.

A metric whose error does not scale with it (an accuracy predictor's top-1) keeps
`AdditiveResiduals`, measured - predicted, with the same two rules on that scale
(`interval_offsets` serves both).

A metric that is definitional (a memory plan, a flash image, MACs) has zero width
(`Residuals.exact`). A profile states its residuals under `uncertainty:`, one entry per
metric:

    uncertainty:
      latency_ms:
        log_ratios: [-0.12, -0.05, 0.01, 0.08, ...]   # sorted; rounded to 4 decimals
        rows: 12 held-out rows of gpu/fits/a100-sxm4-40gb.csv
        fitted_parameters: 0        # > 0: in-sample residuals of a fit with this many
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from latency_models.errors import OptionError, ProfileError

DEFAULT_COVERAGE = 0.9
BOUND_SUFFIXES = ("_low", "_high")  # `latency_ms` -> `latency_ms_low`, `latency_ms_high`
MIN_T_ROWS = 3  # fewer residuals than this say nothing about a spread


def bound_keys(metric: str) -> tuple[str, str]:
    """The names of a metric's lower and upper bounds in a prediction."""
    return f"{metric}{BOUND_SUFFIXES[0]}", f"{metric}{BOUND_SUFFIXES[1]}"


def check_coverage(device: str, coverage: Any) -> float:
    """The coverage as a float in (0, 1), or OptionError naming the value."""
    if isinstance(coverage, bool) or not isinstance(coverage, int | float):
        raise OptionError(device, "coverage", f"must be a number, got {coverage!r}", ["(0, 1)"])
    if not 0.0 < coverage < 1.0:
        raise OptionError(device, "coverage", f"{coverage!r} is not in (0, 1)", ["(0, 1)"])
    return float(coverage)


def t_quantile(p: float, dof: float) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal's; within 0.5% of
    the exact value for dof >= 3 and p <= 0.995), without scipy in this package."""
    z = NormalDist().inv_cdf(p)
    v = dof
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def interval_offsets(
    residuals: Sequence[float], coverage: float = DEFAULT_COVERAGE, fitted_parameters: int = 0
) -> tuple[float, float]:
    """The (low, high) residuals that bound a prediction at `coverage`, on the residuals' own
    scale (log ratios for `Residuals`, differences for `AdditiveResiduals`): the split
    conformal order statistics when there are enough held-out residuals, else a Student-t
    interval (see the module docstring). `residuals` must be sorted and hold at least one."""
    r = np.asarray(residuals, float)
    n, tail = len(r), (1.0 - coverage) / 2
    low_rank = math.floor((n + 1) * tail)
    high_rank = math.ceil((n + 1) * (1 - tail))
    if not fitted_parameters and low_rank >= 1 and high_rank <= n:
        return float(r[low_rank - 1]), float(r[high_rank - 1])
    dof = n - fitted_parameters - 1 if fitted_parameters else n - 1
    dof = max(dof, MIN_T_ROWS - 1)  # a fit with nearly as many parameters as rows
    centre = float(r.mean())
    spread = math.sqrt(float(np.sum((r - centre) ** 2)) / dof)
    half = t_quantile(1 - tail, dof) * spread * math.sqrt(1 + 1 / n)
    return centre - half, centre + half


@dataclass(frozen=True)
class Residuals:
    """One metric's residuals, log(measured / predicted), sorted."""

    log_ratios: tuple[float, ...]
    rows: str = ""  # what they are, in words: which rows, from which file
    fitted_parameters: int = 0  # > 0: in-sample residuals of a fit with this many parameters

    @classmethod
    def exact(cls, why: str) -> Residuals:
        """A definitional metric: zero width."""
        return cls((), why)

    @classmethod
    def of(
        cls,
        predicted: Sequence[float] | np.ndarray,
        measured: Sequence[float] | np.ndarray,
        rows: str,
        fitted_parameters: int = 0,
    ) -> Residuals:
        p, m = np.asarray(predicted, float), np.asarray(measured, float)
        ratios = np.log(m / p)
        return cls(tuple(sorted(round(float(r), 4) for r in ratios)), rows, fitted_parameters)

    @property
    def is_exact(self) -> bool:
        return not self.log_ratios

    def factors(self, coverage: float = DEFAULT_COVERAGE) -> tuple[float, float]:
        """The (low, high) multipliers of a prediction at `coverage`."""
        if self.is_exact:
            return 1.0, 1.0
        low, high = interval_offsets(self.log_ratios, coverage, self.fitted_parameters)
        return math.exp(low), math.exp(high)

    def bounds(
        self, predicted: np.ndarray, coverage: float = DEFAULT_COVERAGE
    ) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.factors(coverage)
        return predicted * low, predicted * high

    def covers(
        self, predicted: np.ndarray, measured: np.ndarray, coverage: float = DEFAULT_COVERAGE
    ) -> float:
        """The share of `measured` inside the intervals of `predicted` (for checking these
        residuals on other rows)."""
        low, high = self.bounds(np.asarray(predicted, float), coverage)
        m = np.asarray(measured, float)
        return float(np.mean((m >= low) & (m <= high)))

    def to_profile(self) -> dict[str, Any]:
        out: dict[str, Any] = {"log_ratios": list(self.log_ratios), "rows": self.rows}
        if self.fitted_parameters:
            out["fitted_parameters"] = self.fitted_parameters
        return out


@dataclass(frozen=True)
class AdditiveResiduals:
    """One metric's residuals, measured - predicted, sorted: for a metric whose error does not
    grow in proportion to it (an accuracy predictor's top-1). The interval of a prediction p
    is [p + low, p + high], with (low, high) from `interval_offsets`, the rule `Residuals`
    uses, widened where needed to hold p itself: a point outside its own error bar would only
    confuse, and widening keeps the coverage.

    With a `spread` (one value per row: a known scale of each row's error), the residuals are
    (measured - predicted) / spread and the interval is [p + low * spread, p + high * spread]:
    normalised split conformal, as valid, and narrower where the error is smaller."""

    errors: tuple[float, ...]
    rows: str = ""  # what they are, in words: which rows, of which model
    fitted_parameters: int = 0  # > 0: in-sample residuals of a fit with this many parameters

    @classmethod
    def of(
        cls,
        predicted: Sequence[float] | np.ndarray,
        measured: Sequence[float] | np.ndarray,
        rows: str,
        fitted_parameters: int = 0,
        spread: np.ndarray | None = None,
    ) -> AdditiveResiduals:
        errors = np.asarray(measured, float) - np.asarray(predicted, float)
        if spread is not None:
            errors = errors / np.asarray(spread, float)
        if len(errors) < MIN_T_ROWS:
            raise ValueError(f"{len(errors)} residuals; an interval needs at least {MIN_T_ROWS}")
        return cls(tuple(sorted(round(float(e), 6) for e in errors)), rows, fitted_parameters)

    def offsets(self, coverage: float = DEFAULT_COVERAGE) -> tuple[float, float]:
        """What to add to a prediction for its (low, high) bounds at `coverage`."""
        low, high = interval_offsets(self.errors, coverage, self.fitted_parameters)
        return min(low, 0.0), max(high, 0.0)

    def bounds(
        self,
        predicted: np.ndarray,
        coverage: float = DEFAULT_COVERAGE,
        spread: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.offsets(coverage)
        p = np.asarray(predicted, float)
        scale = 1.0 if spread is None else np.asarray(spread, float)
        return p + low * scale, p + high * scale

    def covers(
        self,
        predicted: np.ndarray,
        measured: np.ndarray,
        coverage: float = DEFAULT_COVERAGE,
        spread: np.ndarray | None = None,
    ) -> float:
        """The share of `measured` inside the intervals of `predicted` (for checking these
        residuals on other rows)."""
        low, high = self.bounds(predicted, coverage, spread)
        m = np.asarray(measured, float)
        return float(np.mean((m >= low) & (m <= high)))

    def leave_one_out_coverage(self, coverage: float = DEFAULT_COVERAGE) -> float:
        """The share of these residuals that the interval from all the others holds: an
        out-of-sample estimate of the coverage (the interval's own rows are inside it by
        construction)."""
        errors = list(self.errors)
        inside = 0
        for i, error in enumerate(errors):
            others = AdditiveResiduals(
                tuple(errors[:i] + errors[i + 1 :]), "", self.fitted_parameters
            )
            low, high = others.offsets(coverage)
            inside += low <= error <= high
        return inside / len(errors)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errors": list(self.errors), "rows": self.rows}
        if self.fitted_parameters:
            out["fitted_parameters"] = self.fitted_parameters
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdditiveResiduals:
        """As `to_dict` wrote it; ValueError on anything else."""
        errors = data.get("errors") if isinstance(data, Mapping) else None
        if (
            not isinstance(errors, list)
            or len(errors) < MIN_T_ROWS
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in errors
            )
        ):
            raise ValueError(f"residuals: expected at least {MIN_T_ROWS} finite errors")
        fitted = data.get("fitted_parameters", 0)
        if isinstance(fitted, bool) or not isinstance(fitted, int) or fitted < 0:
            raise ValueError("residuals: fitted_parameters must be an integer >= 0")
        return cls(tuple(sorted(float(v) for v in errors)), str(data.get("rows", "")), fitted)


def read_uncertainty(data: Any, source: str) -> dict[str, Residuals]:
    """The `uncertainty:` block of a profile (see the module docstring), checked."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ProfileError(source, "uncertainty", "expected a mapping of metric -> residuals")
    out = {}
    for metric, entry in data.items():
        where = f"uncertainty.{metric}"
        if not isinstance(entry, Mapping) or "log_ratios" not in entry:
            raise ProfileError(source, where, "expected a mapping with log_ratios (and rows)")
        unknown = set(entry) - {"log_ratios", "rows", "fitted_parameters"}
        if unknown:
            raise ProfileError(
                source,
                f"{where}.{sorted(unknown)[0]}",
                "unknown field",
                ["log_ratios", "rows", "fitted_parameters"],
            )
        ratios = entry["log_ratios"]
        if not isinstance(ratios, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in ratios
        ):
            raise ProfileError(source, f"{where}.log_ratios", "expected a list of finite numbers")
        if 0 < len(ratios) < MIN_T_ROWS:
            raise ProfileError(
                source,
                f"{where}.log_ratios",
                f"{len(ratios)} residuals; an interval needs at least {MIN_T_ROWS} (or none, "
                "for an exact metric)",
            )
        fitted = entry.get("fitted_parameters", 0)
        if isinstance(fitted, bool) or not isinstance(fitted, int) or fitted < 0:
            raise ProfileError(source, f"{where}.fitted_parameters", "expected an integer >= 0")
        out[str(metric)] = Residuals(
            tuple(sorted(float(v) for v in ratios)), str(entry.get("rows", "")), fitted
        )
    return out


__all__ = [
    "BOUND_SUFFIXES",
    "DEFAULT_COVERAGE",
    "AdditiveResiduals",
    "Residuals",
    "bound_keys",
    "check_coverage",
    "interval_offsets",
    "read_uncertainty",
    "t_quantile",
]
