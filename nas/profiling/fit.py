"""Fitting profiles to measurement CSVs: calibrate a profile's free parameters, adapt the
profile of a similar device from a few measured networks, and train the learned predictor."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import latency_models as lm
from latency_models.errors import MeasurementError
from latency_models.models.learned import train
from latency_models.models.lut import TABLE_FIT_PARAMETERS
from latency_models.models.mcu import LATENCY_FIT_PARAMETERS
from latency_models.uncertainty import Residuals
from nas.profiling.measurements import Measurements, load_measurements, require_rows
from nas.profiling.validation import HardwareLike, Validation

log = logging.getLogger(__name__)


# ----- calibrate --------------------------------------------------------------------------------


@dataclass
class CalibrationResult:
    model: lm.CostModel  # the profile before calibration
    fit: lm.Fit
    rows: int  # measurements fitted on
    path: Path


def calibrate(
    hardware: HardwareLike,
    measurements: Sequence[Path],
    out: Path,
    name: str | None = None,
) -> CalibrationResult:
    """Fit a profile's free parameters to measurement CSVs and write the new profile to `out`
    (named `name`, default the file stem)."""
    model = lm.load_hardware(hardware)
    data = load_measurements(measurements)
    require_rows(data, measurements)
    fit = model.fit(data.specs, data.metrics, **_fit_options(model, data))
    profile = dict(fit.profile)
    profile["name"] = name or out.stem
    # the base's residuals are not the refitted profile's: check it with `nas latency validate`
    profile.pop("uncertainty", None)
    calibration = dict(profile.get("calibration") or {})
    calibration.update(
        measurements=[str(p) for p in measurements],
        rows=len(data.specs),
        processors=sorted({r.get("processor") or r.get("device") or "" for r in data.rows}),
        mape_before={k: round(v, 4) for k, v in fit.before.items()},
        mape_after={k: round(v, 4) for k, v in fit.after.items()},
        date=datetime.date.today().isoformat(),
    )
    profile["calibration"] = calibration
    lm.dump_profile(profile, out)
    lm.load_hardware(str(out))  # the written file must load
    log.info("calibrated %s on %d measurements: wrote %s", model.name, len(data.specs), out)
    return CalibrationResult(model, fit, len(data.specs), out)


def _fit_options(model: lm.CostModel, data: Measurements) -> dict[str, Any]:
    """The per-row options a model's `fit` takes (a GPU: precisions, runtimes or stacks)."""
    if model.kind != "gpu":
        return {}
    defaults = {k: v[0] for k, v in model.options().items()}
    rows = data.options(model)
    return {
        "precisions": [o.get("precision", defaults["precision"]) for o in rows],
        # an empty cell: the profile's default stack, or its stack of the row's runtime
        "runtimes": [o.get("runtime") for o in rows],
        "stacks": [o.get("stack") for o in rows],
        "layouts": [o.get("layout", defaults["layout"]) for o in rows],
    }


# ----- adapt a profile to a device from a few measurements ---------------------------------------

# Few-shot adaptation fits these parameters of a GPU profile, pulled 10x harder towards the
# base profile than a calibration is: 10-20 measured networks cannot pin down every layer
# class's efficiency, but they do fix the device's overall speed and its overheads.
ADAPT_PRIOR_WEIGHT = 1.0
ADAPT_DEVICE_PARAMETERS = (
    "efficiency.conv",
    "efficiency.pointwise",
    "efficiency.depthwise",
    # the device's bandwidth, not the base's memory efficiency: that is at most 1, and a newer
    # GPU's memory can be faster than the base's whole datasheet bandwidth (an RTX 5090's
    # 1,792 GB/s against an RTX 4090's 1,008)
    "bandwidth_scale",
    "kernel_launch_us",  # the GPU-side time of a kernel
)
# The host's costs, per software stack measured (an older profile's runtime: also its kernel
# time, which it keeps per runtime)
ADAPT_STACK_PARAMETERS = (
    "{stack}.op_overhead_us",
    "{stack}.network_overhead_us",
    "{stack}.kernel_launch_us",
)
# What `adapt(only=...)` moves: the device and the stacks (default), or one of them. `stack`
# is for a known device timed in another framework or on another host.
ADAPT_PARTS = ("device", "stack")


@dataclass
class AdaptResult:
    model: lm.CostModel  # the base profile
    fit: lm.Fit
    rows: int
    path: Path
    before: dict[str, float]  # figures of the base profile on the measurements
    after: dict[str, float]  # of the adapted profile, on the same rows (in-sample)


def adapt(
    hardware: HardwareLike,
    measurements: Sequence[Path],
    out: Path,
    name: str | None = None,
    prior_weight: float = ADAPT_PRIOR_WEIGHT,
    only: str | None = None,
) -> AdaptResult:
    """Fit a profile for a device the user owns from a few (10-20) measured networks, starting
    from the profile of a similar device (`hardware`): only its overall speed and overheads
    move, the rest keeps the base profile's values. Writes the new profile to `out`.

    `only="stack"`: the device is the base's own GPU, timed in another software stack or on
    another host; only that stack's host costs move, and the new profile carries the fitted
    stack (under `stacks:`) and names it as its default. `only="device"`: the stacks stay."""
    if only is not None and only not in ADAPT_PARTS:
        raise MeasurementError(f"only: value {only!r} is not allowed; allowed: device, stack")
    model = lm.load_hardware(hardware)
    data = load_measurements(measurements)
    if "latency_ms" not in data.metrics:
        raise MeasurementError("adapting a profile needs a latency_ms column filled in every row")
    require_rows(data, measurements)
    kwargs = _fit_options(model, data)
    stacks: list[str] = []
    if model.kind == "gpu":
        chosen = zip(kwargs["runtimes"], kwargs["stacks"], strict=True)
        stacks = sorted({model.stack_of(rt, st) for rt, st in chosen})
        kwargs["free"] = _adapt_parameters(model, stacks, only)
        kwargs["prior_weight"] = prior_weight
    elif only is not None:
        raise MeasurementError(f"only: {model.name} is a {model.kind} profile: it has no stack")
    fit = model.fit(data.specs, data.metrics, **kwargs)
    profile = dict(fit.profile)
    if only == "stack" and len(stacks) == 1:  # the profile runs the stack it was adapted to
        profile["stack"] = stacks[0]
    profile["name"] = name or out.stem
    profile["description"] = f"adapted from {model.name} on {len(data.specs)} measurements"
    profile["calibration"] = {
        "adapted_from": model.name,
        **({"only": only} if only else {}),
        "measurements": [str(p) for p in measurements],
        "rows": len(data.specs),
        "mape_before": round(fit.before["latency_ms_mape"], 4),
        "mape_after": round(fit.after["latency_ms_mape"], 4),
        "date": datetime.date.today().isoformat(),
    }
    measured = data.metrics["latency_ms"]
    predicted = data.predict(lm.from_profile(profile, str(out)))
    # the base's residuals (per batch range, of other rows) are not this device's: its
    # intervals come from the adaptation's own, in-sample residuals, taken with n - p degrees
    # of freedom, so that 10-20 rows give honestly wide intervals
    profile.pop("uncertainty", None)
    fitted = _fitted_parameters(model, kwargs)
    if fitted is not None and len(measured) > fitted + 1:
        residuals = Residuals.of(
            predicted,
            measured,
            f"in-sample: the {len(measured)} rows the adaptation fitted {fitted} parameters on",
            fitted_parameters=fitted,
        )
        profile["uncertainty"] = {"latency_ms": residuals.to_profile()}
    lm.dump_profile(profile, out)
    adapted = lm.load_hardware(str(out))  # the written file must load
    before = Validation(model.name, data.predict(model), measured, data.macs()).figures()
    after = Validation(adapted.name, predicted, measured, data.macs()).figures()
    log.info("adapted %s on %d measurements: wrote %s", model.name, len(data.specs), out)
    return AdaptResult(model, fit, len(data.specs), out, before, after)


def _fitted_parameters(model: lm.CostModel, fit_options: dict[str, Any]) -> int | None:
    """How many parameters an adaptation fits to latency (None: a kind it cannot count)."""
    if model.kind == "gpu":
        return len(fit_options["free"])
    if model.kind == "mcu":
        return LATENCY_FIT_PARAMETERS
    if model.kind in ("lut", "measured"):
        return TABLE_FIT_PARAMETERS
    return None


def _adapt_parameters(model: lm.CostModel, stacks: Sequence[str], only: str | None) -> list[str]:
    """The parameters an adaptation frees, among those the profile has."""
    names = set(model.parameter_names(stacks))
    wanted = [] if only == "stack" else list(ADAPT_DEVICE_PARAMETERS)
    if only != "device":
        wanted += [p.format(stack=s) for p in ADAPT_STACK_PARAMETERS for s in stacks]
    return [p for p in wanted if p in names]


# ----- fit a learned model ----------------------------------------------------------------------


@dataclass
class LearnedResult:
    path: Path
    profile: dict[str, Any]
    rows: int  # measurements trained on

    @property
    def train_mape(self) -> float:
        return float(self.profile["trained_on"]["train_mape"])


def fit_learned(
    measurements: Sequence[Path],
    out: Path,
    name: str | None = None,
    trees: int = 300,
    depth: int = 3,
    learning_rate: float = 0.05,
    seed: int = 0,
) -> LearnedResult:
    """Train the learned predictor (gradient-boosted trees) on measurement CSVs and write its
    profile to `out` (named `name`, default the file stem)."""
    data = load_measurements(measurements)
    if "latency_ms" not in data.metrics:
        raise MeasurementError("training needs a latency_ms column")
    require_rows(data, measurements)
    processors = sorted({r.get("processor") or "" for r in data.rows} - {""})
    profile = train(
        data.specs,
        data.metrics["latency_ms"],
        name=name or out.stem,
        trees=trees,
        max_depth=depth,
        learning_rate=learning_rate,
        seed=seed,
        description=f"gradient-boosted trees trained on {len(data.specs)} measured subnets"
        + (f" ({', '.join(processors)})" if processors else ""),
        trained_on={
            "measurements": [str(p) for p in measurements],
            "spaces": sorted({r.get("space") or r.get("network") or "" for r in data.rows}),
            "statistic": sorted({r.get("statistic") or "" for r in data.rows} - {""}),
            "arch_ids": data.arch_ids(),
        },
    )
    lm.dump_profile(profile, out)
    lm.load_hardware(str(out))
    log.info("trained %d trees on %d rows: wrote %s", trees, len(data.specs), out)
    return LearnedResult(out, profile, len(data.specs))
