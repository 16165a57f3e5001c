"""Validating profiles: each profile's predictions against subnets timed here or against the
rows of a measurement CSV, the figures that compare them (MAPE, Kendall tau, ...) and their
plot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import latency_models as lm
from latency_models.errors import HardwareError, MeasurementError
from latency_models.torch.measure import Timing
from nas.profiling.measurements import (
    CSV_FIELDS,
    check_statistic,
    load_measurements,
    measurement_rows,
    require_rows,
    write_csv,
)
from nas.profiling.timing import _space, sample_archs, time_archs
from supernet import Arch, SearchSpace

log = logging.getLogger(__name__)

HardwareLike = str | lm.CostModel


@dataclass
class Validation:
    """One profile's predictions of measured subnets (or a second measurement of them)."""

    hardware: str
    predicted: np.ndarray
    measured: np.ndarray
    # MACs x batch of each network: ranking by them is the baseline a cost model must beat
    macs: np.ndarray | None = None

    def figures(self) -> dict[str, float]:
        from scipy.stats import kendalltau

        error = self.predicted / self.measured - 1
        figures = {
            "n": len(error),
            "within_5pct": float(np.mean(np.abs(error) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(error) <= 0.10)),
            "mape": float(np.mean(np.abs(error))),
            "max_error": float(np.max(np.abs(error))),
            "bias": float(np.mean(error)),
            "kendall_tau": float(kendalltau(self.predicted, self.measured).statistic),
        }
        if self.macs is not None:
            figures["macs_kendall_tau"] = float(kendalltau(self.macs, self.measured).statistic)
        return figures


@dataclass
class ValidationReport:
    space: str
    subnets: int  # subnets measured
    validations: list[Validation]  # one per profile
    rescaled: list[Validation] = field(default_factory=list)  # with a same-session scale
    floor: list[Validation] = field(default_factory=list)  # second measurement (noise floor)

    @property
    def rows(self) -> list[Validation]:
        """Every validation, in the order they are reported."""
        return [*self.validations, *self.rescaled, *self.floor]


def validate(
    hardware: Sequence[HardwareLike],
    space: SearchSpace | str | None,
    n: int = 50,
    seed: int = 2,
    resolutions: Sequence[int] | None = None,
    batch: int = 1,
    threads: int | None = None,
    repeats: int | None = None,
    rounds: int | None = None,
    statistic: str | None = None,
    noise_floor: bool = False,
    recalibrate: bool = False,
    measurements: Path | None = None,
    save: Path | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Measure `n` random subnets end to end (none used for calibration or training), or read
    them from `measurements`, and compare each profile's predictions with them.

    Timing settings not given are the first measured profile's. `noise_floor` also times a
    second copy of each subnet; `recalibrate` also times the first measured profile's
    calibration subnets and reports every profile once more with one scale fitted on them.
    `save` writes the measurements as a CSV."""
    models = [lm.load_hardware(h) for h in hardware]
    floor: list[Validation] = []
    rescaled: list[Validation] = []
    if measurements is not None:  # networks measured elsewhere, each with its own options
        data = load_measurements([measurements])
        if "latency_ms" not in data.metrics:
            raise MeasurementError(f"{measurements}: no latency_ms column")
        measured, macs = data.metrics["latency_ms"], data.macs()
        validations = [Validation(m.name, data.predict(m), measured, macs) for m in models]
        require_rows(data, [measurements])  # after the rows' options are checked
        label = space.name if isinstance(space, SearchSpace) else space or ""
        return ValidationReport(label, len(measured), validations)
    s = _space(space)
    settings = _timing_settings(models, threads, repeats, rounds, statistic)
    timing = Timing("cpu", "fp32", settings["threads"], settings["warmup"], settings["repeats"])
    archs = sample_archs(s, n, seed, _excluded(models), resolutions)
    calibration = _calibration_archs(models, s) if recalibrate else []
    copies = time_archs(
        s,
        [*archs, *calibration],
        timing,
        batch,
        settings["rounds"],
        f"timing {n + len(calibration)} subnets",
        instances=2 if noise_floor else 1,
        progress=progress,
    )
    stat = settings["statistic"]
    results = copies[0][:n]
    measured = np.array([r.stat(stat) for r in results])
    if noise_floor:
        again = np.array([r.stat(stat) for r in copies[1][:n]])
        floor.append(Validation("second measurement (noise floor)", again, measured))
    specs = [s.to_spec(a, batch=batch) for a in archs]
    if calibration:
        cal_specs = [s.to_spec(a, batch=batch) for a in calibration]
        cal_measured = np.array([r.stat(stat) for r in copies[0][n:]])
        for m in models:
            # one factor per profile, fitted on the calibration subnets only
            ratio = cal_measured / m.predict_arrays(cal_specs)["latency_ms"]
            factor = float(np.exp(np.mean(np.log(ratio))))
            rescaled.append(
                Validation(
                    f"{m.name} x {factor:.3f} (same-session scale)",
                    factor * m.predict_arrays(specs)["latency_ms"],
                    measured,
                )
            )
    if save is not None:
        rows = measurement_rows(s, archs, results, timing, batch, stat)
        write_csv(save, rows, CSV_FIELDS)
        log.info("wrote %d measured subnets to %s", len(rows), save)
    macs = np.array([spec.macs * spec.batch for spec in specs], dtype=float)
    validations = [
        Validation(m.name, m.predict_arrays(specs)["latency_ms"], measured, macs) for m in models
    ]
    return ValidationReport(s.name, len(measured), validations, rescaled, floor)


def _calibration_archs(models: Sequence[lm.CostModel], space: SearchSpace) -> list[Arch]:
    """The calibration subnets of the first measured profile (of this space)."""
    for m in models:
        cal = m.profile.get("calibration") or {}
        if isinstance(m, lm.MeasuredModel) and cal.get("space") == space.name:
            if cal.get("archs"):
                return [space.from_json(text) for text in cal["archs"]]
            # older profiles keep the seed: sampling again gives the same subnets
            archs = sample_archs(space, int(cal["n"]), int(cal["seed"]),
                                 resolutions=cal.get("resolutions") or None)  # fmt: skip
            if [space.arch_id(a) for a in archs] != cal.get("arch_ids"):
                raise HardwareError(f"hardware {m.name!r}: cannot rebuild its calibration subnets")
            return archs
    raise HardwareError(
        f"--recalibrate needs a measured profile calibrated on {space.name!r} among --hardware"
    )


def _excluded(models: Sequence[lm.CostModel]) -> set[str]:
    """Arch ids a profile was calibrated or trained on: never validation subnets."""
    ids: set[str] = set()
    for m in models:
        ids.update(m.profile.get("calibration", {}).get("arch_ids", []) or [])
        ids.update(m.profile.get("trained_on", {}).get("arch_ids", []) or [])
    return ids


def _timing_settings(
    models: Sequence[lm.CostModel],
    threads: int | None,
    repeats: int | None,
    rounds: int | None,
    statistic: str | None,
) -> dict[str, Any]:
    """The timing of the first measured profile (as its calibration subnets were timed),
    unless given."""
    base: dict[str, Any] = {
        "threads": 1,
        "warmup": 10,
        "repeats": 100,
        "rounds": 10,
        "statistic": "median",
    }
    for m in models:
        if isinstance(m, lm.MeasuredModel):
            base.update(threads=m.threads, warmup=m.warmup, repeats=m.repeats, rounds=m.rounds)
            base["statistic"] = m.calibration.get("statistic", base["statistic"])
            break
    given = {"threads": threads, "repeats": repeats, "rounds": rounds, "statistic": statistic}
    for key, value in given.items():
        if value is not None:
            base[key] = value
    check_statistic(base["statistic"])
    return base


def plot_validations(validations: Sequence[Validation], space: str, path: Path) -> None:
    """Predicted against measured latency, one marker per profile, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    low = min(min(v.measured.min(), v.predicted.min()) for v in validations) * 0.9
    high = max(max(v.measured.max(), v.predicted.max()) for v in validations) * 1.1
    line = np.array([low, high])
    ax.plot(line, line, color="black", linewidth=1, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.2, label="±10%")
    for v, marker in zip(validations, "os^Dv", strict=False):
        f = v.figures()
        label = f"{v.hardware}: {f['within_10pct']:.0%} within ±10%, tau {f['kendall_tau']:.2f}"
        ax.scatter(v.measured, v.predicted, s=18, marker=marker, label=label)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{space}: {len(validations[0].measured)} subnets")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
