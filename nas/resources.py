"""A search config checked against what it names, and the resources checking it opened.

Checking a config reads its trained file (once, with its SHA-256), its predictor and its
devices' models; those opened files are what the search then runs with. So checking returns
both, as one `CheckedSearch`: the config as checked (a new value: the files' absolute paths,
the default objectives filled in; what was passed in is never changed) and its
`SearchResources`. A search launched from it reads nothing again; a search resumed from its
stored config checks that config the same way, refusing files whose SHA-256 is not the one
recorded at launch.

    checked = load_search_config("experiments/search_mnist.yaml")
    checked.config.objectives          # as written, or the family's defaults
    checked.resources.artifact.sha256  # the trained file, read once
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import latency_models as lm
from nas.config import (
    NETWORK_METRICS,
    SearchConfig,
    default_objectives,
    measured_quality,
    read_search_config,
)
from nas.domain import SearchDomain, search_domain
from nas.errors import SearchConfigError, UserError
from supernet.errors import CheckpointError
from supernet.family import OpenedArtifact, open_artifact
from supernet.io import merge_overrides, read_yaml_mapping, resolve_artifact_path

__all__ = [
    "CheckedSearch",
    "DeviceTarget",
    "SearchResources",
    "check_search_config",
    "load_search_config",
]


@dataclass(frozen=True)
class DeviceTarget:
    """A target device as a search costs it: its name, batch size and model options."""

    name: str
    batch: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResources:
    """The files and models one search process uses, each opened once: the trained file,
    the predictor and the device models. Ray actors get an `EvaluatorSpec` naming them
    (nas.evaluation) and reopen them."""

    artifact: OpenedArtifact
    predictor: Any  # the family's quality predictor, or None
    devices: list[tuple[DeviceTarget, lm.CostModel]]
    # the part of the space every device can cost (None: all of it); see nas.domain
    domain: SearchDomain | None = None
    quality_metrics: tuple[str, ...] = ()  # measured with the trained network (config)


@dataclass(frozen=True)
class CheckedSearch:
    """A config that passed every check, with what checking it opened."""

    config: SearchConfig
    resources: SearchResources


def check_search_config(
    raw: dict[str, Any] | SearchConfig,
    source: str = "<config>",
    supernet_sha256: str | None = None,
    predictor_sha256: str | None = None,
) -> CheckedSearch:
    """Check a config (a mapping, or a SearchConfig already read): its schema, its devices
    with their metrics, limits and options, its trained file and predictor, and its
    objectives. With recorded hashes (a search being resumed), refuse files that are not
    the ones it was launched with. Every problem is a SearchConfigError naming the field."""
    config = read_search_config(
        raw.model_dump(mode="json") if isinstance(raw, SearchConfig) else raw, source
    )
    devices = _device_models(config, source)
    try:  # after the targets: those need no files, so their errors come first
        opened = open_artifact(config.supernet, supernet_sha256)
    except CheckpointError as err:
        if supernet_sha256 is not None:  # the file recorded at launch changed: say just that
            raise
        raise SearchConfigError(f"invalid search config {source}: supernet: {err}") from None
    family = opened.family
    domain = search_domain(opened.space, devices, source)  # refuses targets sharing none
    if config.space and config.space != opened.space.name:
        raise SearchConfigError(
            f"invalid search config {source}: space: {config.space!r} is not the space of "
            f"{opened.path}, {opened.space.name!r}"
        )
    metrics = set(NETWORK_METRICS) | set(family.quality_metrics)
    metrics.update(
        f"{device}.{m}"
        for device, hw in devices.items()
        for m in hw.metrics
        if m not in NETWORK_METRICS
    )
    for i, objective in enumerate(config.objectives):
        if objective.metric not in metrics:
            raise SearchConfigError(
                f"invalid search config {source}: objectives.{i}.metric: unknown metric "
                f"{objective.metric!r}; allowed: {sorted(metrics)}"
            )
    if not family.predicts_quality and (config.predictor or config.evaluation != "supernet"):
        raise SearchConfigError(
            f"invalid search config {source}: evaluation: {config.supernet} is a "
            f"{family.description}, whose quality no predictor stands in for; each subnet "
            "is measured with the trained network: set `evaluation: supernet` and no predictor"
        )
    if config.evaluation in ("predictor", "predictor+verify") and not config.predictor:
        raise SearchConfigError(
            f"invalid search config {source}: predictor: evaluation {config.evaluation!r} "
            "needs a predictor (fit one with `nas predictor fit`)"
        )
    predictor, predictor_path = None, None
    if config.predictor:
        predictor_path = _predictor_path(config.predictor, opened, source)
        try:
            predictor = family.load_predictor(predictor_path, opened, predictor_sha256)
        except UserError as err:
            if predictor_sha256 is not None and isinstance(err, CheckpointError):
                raise  # the predictor recorded at launch changed: say just that
            raise SearchConfigError(f"invalid search config {source}: predictor: {err}") from None
    _check_predicted_quality(config, family.quality_metrics, predictor, source)
    checked = config.model_copy(
        update={
            "supernet": str(opened.path),  # a run folder stands for its trained file
            "predictor": str(predictor_path) if predictor_path else None,
            "objectives": config.objectives or default_objectives(config, family.quality_metrics),
        }
    )
    targets = [
        (DeviceTarget(name, t.batch, dict(t.options)), devices[name])
        for name, t in checked.targets.items()
    ]
    quality = measured_quality(checked, family.quality_metrics)
    return CheckedSearch(checked, SearchResources(opened, predictor, targets, domain, quality))


def load_search_config(path: str | Path, **overrides: Any) -> CheckedSearch:
    """Read a YAML search config, apply the overrides that are not None, and check it."""
    raw = read_yaml_mapping(path, SearchConfigError, "search config")
    return check_search_config(merge_overrides(raw, overrides), str(path))


def _device_models(config: SearchConfig, source: str) -> dict[str, lm.CostModel]:
    """Each target's cost model, after checking its limits and options against it."""
    devices: dict[str, lm.CostModel] = {}
    for device, target in config.targets.items():
        where = f"targets.{device}"
        try:
            hw = lm.load_hardware(device)
        except lm.HardwareError as err:
            raise SearchConfigError(f"invalid search config {source}: {where}: {err}") from None
        allowed = list(hw.metrics)
        for name, value in target.limits.items():
            if name not in hw.metrics:
                raise SearchConfigError(
                    f"invalid search config {source}: {where}.{name}: {device} has no metric "
                    f"{name!r}; allowed limits: {allowed}, options: batch, "
                    f"{', '.join(hw.options()) or '(none)'}"
                )
            if not math.isfinite(value) or value <= 0:
                raise SearchConfigError(
                    f"invalid search config {source}: {where}.{name}: a limit must be > 0 "
                    f"and finite, got {value}"
                )
        for name, value in target.options.items():
            if name in hw.metrics:  # a limit that is not a number: "8", true, [8]
                raise SearchConfigError(
                    f"invalid search config {source}: {where}.{name}: a limit must be a "
                    f"number, got {value!r} ({type(value).__name__}); write it unquoted, "
                    f"e.g. {name}: 8"
                )
        try:
            hw.check_options(target.options)
        except lm.HardwareError as err:
            raise SearchConfigError(f"invalid search config {source}: {where}: {err}") from None
        devices[device] = hw
    return devices


def _check_predicted_quality(
    config: SearchConfig, quality: dict[str, str], predictor: Any, source: str
) -> None:
    """A predictor predicts the primary quality metric, and "<primary>_int8" when it holds
    an int8 drop model (`nas predictor fit --int8-sample N`); any other quality objective
    needs `evaluation: supernet`."""
    if config.evaluation == "supernet":
        return
    primary = next(iter(quality))
    predictable = {primary}
    if predictor is not None and predictor.int8_drop is not None:
        predictable.add(f"{primary}_int8")
    for i, objective in enumerate(config.objectives):
        if objective.metric in quality and objective.metric not in predictable:
            raise SearchConfigError(
                f"invalid search config {source}: objectives.{i}.metric: "
                f"{objective.metric!r} is measured, and this predictor does not predict it: "
                f"set `evaluation: supernet`; or fit the predictor with `nas predictor fit "
                f"--int8-sample N`; or search on {primary!r} with `evaluation: "
                f"predictor+verify` and a target `precision: int8`, which measures it on the "
                "front"
            )


def _predictor_path(path: str, opened: OpenedArtifact, source: str) -> Path:
    """The predictor file (a run folder stands for the family's predictor file in it),
    absolute."""
    names = (opened.family.predictor_file_name,) if opened.family.predictor_file_name else ()
    try:
        resolved = resolve_artifact_path(path, names)
    except CheckpointError as err:
        raise SearchConfigError(f"invalid search config {source}: predictor: {err}") from None
    if not resolved.is_file():
        raise SearchConfigError(
            f"invalid search config {source}: predictor: file not found: {resolved} "
            "(fit one with `nas predictor fit`)"
        )
    return resolved.resolve()
