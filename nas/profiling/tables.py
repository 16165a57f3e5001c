"""Building a `measured` profile of this machine: time every distinct block of a space into a
look-up table, then calibrate the table on subnets timed end to end."""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import latency_models as lm
from latency_models.errors import HardwareError
from latency_models.hardware import read_yaml, user_profile_dir
from latency_models.models.lut import TABLE_FIT_PARAMETERS, BlockTableModel
from latency_models.torch.measure import Timing, device_name, measure_block_table
from latency_models.uncertainty import MIN_T_ROWS, Residuals
from nas.profiling.measurements import _torch_version, check_statistic
from nas.profiling.timing import _space, progress_bar, sample_archs, time_archs
from supernet import SearchSpace

log = logging.getLogger(__name__)


@dataclass
class LutResult:
    path: Path
    profile: dict[str, Any]  # as written
    blocks: int  # blocks timed in this run
    space: str
    batch: int

    @property
    def entries(self) -> int:
        """Entries of the profile, all batches."""
        return sum(len(t) for t in self.profile["tables"].values())

    @property
    def calibration(self) -> dict[str, Any]:
        return dict(self.profile.get("calibration", {}))


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_profile_name(name: str) -> None:
    """HardwareError unless `name` is a plain file name: no path separator, no `..`."""
    if not _PROFILE_NAME.match(name) or ".." in name or name.lower().endswith((".yaml", ".yml")):
        raise HardwareError(
            f"profile name {name!r} is not allowed: use letters, digits, '-', '_' and '.' "
            "(no path separators or '..', no .yaml suffix); pass --out to choose the file"
        )


def build_lut(
    space: SearchSpace | str,
    device: str = "cpu",
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    resolutions: Sequence[int] | None = None,
    calibrate_n: int = 30,
    calibration_seed: int = 1,
    rounds: int = 10,
    statistic: str = "median",
    name: str = "local-cpu",
    out: Path | None = None,
    merge: bool = True,
    progress: bool = True,
) -> LutResult:
    """Time every distinct block of a space into a `measured` profile (default: NAME.yaml in
    the user's profile folder, `$NAS_PROFILE_DIR` or runs/profiles, where `load_hardware(NAME)`
    finds it before the shipped profiles; never the installed package), then calibrate it on
    `calibrate_n` separate subnets measured end to end. With `merge`, entries of an existing
    profile at `out` are kept."""
    check_profile_name(name)  # before anything is timed or written
    s = _space(space)
    check_statistic(statistic)
    timing = Timing(device, "fp32", threads, warmup, repeats)
    path = out or user_profile_dir() / f"{name}.yaml"
    profile = _base_profile(path, name, merge)
    model = lm.from_profile(profile, str(path))
    assert isinstance(model, BlockTableModel)
    try:
        cover = s.block_cover(resolutions)
    except NotImplementedError as err:
        raise HardwareError(f"build-lut: {err}") from None
    specs = [s.to_spec(a, batch=batch) for a in cover]
    entries: dict[str, tuple[lm.NetworkSpec, int]] = {}
    for spec in specs:
        for i, sig in enumerate(spec.arrays.blocks):
            entries.setdefault(model.key_of(sig, i == 0), (spec, i))
    start = datetime.datetime.now()
    description = f"timing {len(entries)} blocks"
    with progress_bar(description, rounds * len(entries), progress) as advance:
        table = measure_block_table(entries, timing, rounds, lambda i, n: advance(1))
    tables = profile.setdefault("tables", {})
    tables[batch] = {**(tables.get(batch) or {}), **table} if merge else table
    profile["measurement"] = {
        "device": device,
        "processor": device_name(device),
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "rounds": rounds,
        "statistic": statistic,
        "torch": _torch_version(),
        "spaces": sorted({*profile.get("measurement", {}).get("spaces", []), s.name})
        if merge
        else [s.name],
        "date": start.date().isoformat(),
    }
    model = lm.from_profile(profile, str(path))
    profile.pop("uncertainty", None)  # residuals of the tables as they were
    if calibrate_n:
        profile["calibration"], residuals = _calibrate_table(
            model, s, timing, batch, rounds, statistic, calibrate_n, calibration_seed,
            resolutions, progress,
        )  # fmt: skip
        if residuals is not None:
            profile["uncertainty"] = {"latency_ms": residuals.to_profile()}
    profile["measurement"]["seconds"] = round((datetime.datetime.now() - start).total_seconds())
    lm.dump_profile(profile, path)
    lm.load_hardware(str(path))
    log.info("wrote %s: %d blocks of %s at batch %d", path, len(table), s.name, batch)
    return LutResult(path, profile, len(table), s.name, batch)


def _calibrate_table(
    model: lm.CostModel,
    space: SearchSpace,
    timing: Timing,
    batch: int,
    rounds: int,
    statistic: str,
    n: int,
    seed: int,
    resolutions: Sequence[int] | None,
    progress: bool,
) -> tuple[dict[str, Any], Residuals | None]:
    """The calibration of a block table, fitted on `n` subnets timed end to end, and its
    leave-one-out residuals (each subnet against a calibration on the others: rows the
    calibration that predicts them did not fit, for the profile's prediction intervals; None
    for too few subnets to leave one out)."""
    archs = sample_archs(space, n, seed, resolutions=resolutions)
    description = f"timing {n} calibration subnets"
    (results,) = time_archs(space, archs, timing, batch, rounds, description, 1, progress)
    measured = np.array([r.stat(statistic) for r in results])
    specs = [space.to_spec(a, batch=batch) for a in archs]
    fit = model.fit(specs, {"latency_ms": measured})
    assert isinstance(model, BlockTableModel)
    residuals = None
    if n > max(MIN_T_ROWS, TABLE_FIT_PARAMETERS):  # each left out: a calibration on the others
        residuals = Residuals.of(
            model.leave_one_out(specs, measured),
            measured,
            f"leave-one-out: each of the {n} calibration subnets ({space.name}, seed {seed}) "
            "against a calibration on the others",
        )
    calibration = dict(fit.profile["calibration"])
    calibration.update(
        space=space.name,
        seed=seed,
        n=n,
        statistic=statistic,
        mape_uncalibrated=round(fit.before["latency_ms_mape"], 4),
        mape_calibrated=round(fit.after["latency_ms_mape"], 4),
        resolutions=list(resolutions or []),
        arch_ids=[space.arch_id(a) for a in archs],
        archs=[space.to_json(a) for a in archs],
    )
    return calibration, residuals


def _base_profile(path: Path, name: str, merge: bool) -> dict[str, Any]:
    if merge and path.is_file():
        existing = read_yaml(path)
        lm.from_profile(existing, str(path))  # must be valid before we extend it
        if existing.get("kind") != "measured":
            raise HardwareError(f"{path} is a {existing.get('kind')} profile, not measured")
        return dict(existing)
    return {
        "name": name,
        "kind": "measured",
        "description": "this machine's CPU: block latencies timed with torch, calibrated end "
        "to end (nas latency build-lut)",
        "key_format": "generic",
        "tables": {},
    }
