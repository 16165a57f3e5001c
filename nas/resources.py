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

from pydantic import ValidationError

import latency_models as lm
from latency_models.uncertainty import DEFAULT_COVERAGE
from nas.config import (
    MIN_ACTIVE_BUDGET,
    MIN_ACTIVE_INITIAL,
    MODEL_BASED_SAMPLERS,
    NETWORK_METRICS,
    ConfigProblems,
    SearchConfig,
    Target,
    default_objectives,
    measured_quality,
    read_search_config,
    split_target_fields,
)
from nas.domain import SearchDomain, cost_problem, search_domain
from nas.errors import SearchConfigError, UserError
from supernet.errors import CheckpointError
from supernet.family import OpenedArtifact, open_artifact
from supernet.io import merge_overrides, read_yaml_mapping, resolve_artifact_path
from supernet.space import get_space, same_space, space_reference

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
    coverage: float = DEFAULT_COVERAGE  # of every candidate's bounds (SearchConfig.coverage)


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
    the ones it was launched with. Every problem found is in one SearchConfigError, each
    naming its field: a bad field does not hide the problems of the others."""
    raw = raw.model_dump(mode="json") if isinstance(raw, SearchConfig) else raw
    problems = ConfigProblems(source)
    config = read_search_config(raw, source, problems)
    targets = config.targets if config is not None else _valid_targets(raw)
    devices = _device_models(targets, problems)
    _check_confidence(targets, devices, problems)
    opened = _open_supernet(raw, supernet_sha256, problems)
    domain = _check_devices(opened, targets, devices, problems) if opened else None
    if opened is None or config is None or problems.items:
        if opened is None or config is None:  # the checks below need both
            _predictor_named(raw, opened, problems)
        problems.raise_any()
    assert opened is not None and config is not None  # raise_any raised otherwise
    family = opened.family
    if config.space:
        _check_space(config.space, opened, problems)
    metrics = set(NETWORK_METRICS) | set(family.quality_metrics)
    metrics.update(
        f"{device}.{m}"
        for device, hw in devices.items()
        for m in hw.metrics
        if m not in NETWORK_METRICS
    )
    for i, objective in enumerate(config.objectives):
        if objective.metric not in metrics:
            problems.add(
                f"objectives.{i}.metric",
                f"unknown metric {objective.metric!r}; allowed: {sorted(metrics)}",
            )
    if not family.predicts_quality and (config.predictor or not config.measures):
        problems.add(
            "evaluation",
            f"{config.supernet} is a {family.description}, whose quality no predictor stands "
            "in for; each subnet is measured with the trained network: set `evaluation: "
            "supernet` (or `active`) and no predictor",
        )
    elif config.evaluation == "active" and config.predictor:
        problems.add(
            "predictor",
            "`evaluation: active` fits its own predictor to what it measures each round; "
            "remove `predictor`",
        )
    elif config.evaluation in ("predictor", "predictor+verify") and not config.predictor:
        problems.add(
            "predictor",
            f"evaluation {config.evaluation!r} needs a predictor (fit one with "
            "`nas predictor fit`)",
        )
    if config.algorithm.sampler in MODEL_BASED_SAMPLERS and config.evaluation != "supernet":
        problems.add(
            "algorithm.sampler",
            f"{config.algorithm.sampler} fits a model to every result, which pays where each "
            "candidate is measured on the supernet (`evaluation: supernet`); a predictor "
            f"scores thousands of candidates a second, where {config.algorithm.sampler} "
            "would take most of the time: use nsga2 (or auto)",
        )
    _check_active(config, opened, problems)
    predictor, predictor_path = None, None
    if config.predictor and not {"evaluation", "predictor"} & problems.fields():
        predictor_path = _predictor_path(config.predictor, opened, problems)
    if predictor_path is not None:
        try:
            predictor = family.load_predictor(predictor_path, opened, predictor_sha256)
        except UserError as err:
            if predictor_sha256 is not None and isinstance(err, CheckpointError):
                raise  # the predictor recorded at launch changed: say just that
            problems.add("predictor", str(err))
    if "predictor" not in problems.fields():
        _check_predicted_quality(config, family.quality_metrics, predictor, problems)
    problems.raise_any()
    reference = space_reference(opened.space)
    checked = config.model_copy(
        update={
            "supernet": str(opened.path),  # a run folder stands for its trained file
            "predictor": str(predictor_path) if predictor_path else None,
            "objectives": config.objectives or default_objectives(config, family.quality_metrics),
            # a space that is not a preset: its definition, so the stored search rebuilds it
            "space": reference if isinstance(reference, dict) else config.space,
        }
    )
    resolved = [
        (DeviceTarget(name, t.batch, dict(t.options)), devices[name])
        for name, t in checked.targets.items()
    ]
    quality = measured_quality(checked, family.quality_metrics)
    resources = SearchResources(opened, predictor, resolved, domain, quality, checked.coverage)
    return CheckedSearch(checked, resources)


def _check_active(config: SearchConfig, opened: OpenedArtifact, problems: ConfigProblems) -> None:
    """`budget` and `active` go with `evaluation: active` only, which needs a budget of at
    least MIN_ACTIVE_BUDGET that the space can fill and an initial sample below it."""
    if config.evaluation != "active":
        for name in ("budget", "active"):
            if getattr(config, name) is not None:
                problems.add(
                    name,
                    f"`{name}` goes with `evaluation: active` only (got evaluation "
                    f"{config.evaluation!r})",
                )
        return
    if config.budget is None:
        problems.add(
            "budget",
            "required with `evaluation: active`: how many subnets to measure on the supernet "
            f"(at least {MIN_ACTIVE_BUDGET})",
        )
        return
    if config.budget < MIN_ACTIVE_BUDGET:
        problems.add(
            "budget",
            f"must be at least {MIN_ACTIVE_BUDGET} (an initial sample of {MIN_ACTIVE_INITIAL} "
            f"and rounds after it), got {config.budget}",
        )
    size = opened.space.size()
    if config.budget > size:
        problems.add(
            "budget",
            f"the space {opened.space.name} holds {size} subnets, fewer than the budget "
            f"{config.budget}: measure them all with `evaluation: supernet` instead",
        )
    initial = config.active.initial if config.active else None
    if initial is not None and initial >= config.budget:
        problems.add(
            "active.initial",
            f"must be less than the budget {config.budget} (rounds follow it), got {initial}",
        )
    if config.active and config.active.halving is not None:
        _check_halving(config, opened, problems)


def _check_halving(config: SearchConfig, opened: OpenedArtifact, problems: ConfigProblems) -> None:
    """Successive halving measures the primary quality metric on part of the validation split
    first: the family must measure it so, and it must be the one quality the search
    measures (a partial figure of one metric says nothing of another's)."""
    family = opened.family
    primary = next(iter(family.quality_metrics))
    if not family.measures_partially:
        problems.add(
            "active.halving",
            f"a {family.description}'s {primary} cannot be measured on part of its "
            "validation data; remove `halving`",
        )
        return
    others = [m for m in measured_quality(config, family.quality_metrics) if m != primary]
    if others:
        problems.add(
            "active.halving",
            f"successive halving measures {primary} alone, and this search also measures "
            f"{', '.join(others)} (an objective, or an int8 target); remove `halving`",
        )
    objectives = config.objectives or default_objectives(config, family.quality_metrics)
    goals = {o.metric: o.goal for o in objectives}
    if goals.get(primary) != family.quality_metrics[primary]:
        problems.add(
            "active.halving",
            f"successive halving stops a subnet whose {primary} cannot reach the front: "
            f"{primary} must be an objective, to {family.quality_metrics[primary]}",
        )


def _check_confidence(
    targets: dict[str, Target], devices: dict[str, lm.CostModel], problems: ConfigProblems
) -> None:
    """A limit with confidence needs an interval on its metric, and a search has one coverage
    (its bounds are computed once per candidate, at it): every confidence must be the same."""
    first: tuple[str, float] | None = None
    for device, target in targets.items():
        hw = devices.get(device)
        for metric, confidence in target.confidence.items():
            where = f"targets.{device}.{metric}.confidence"
            if metric not in target.limits:
                problems.add(
                    where, "a confidence belongs to a limit: write {max: N, confidence: C}"
                )
                continue
            if hw is not None and metric in hw.metrics and metric not in hw.interval_metrics():
                problems.add(
                    where,
                    f"{device} states no residuals for {metric}, so its predictions have no "
                    "interval; give the profile an `uncertainty:` block (calibrate it with "
                    "`nas latency calibrate`, or adapt it to your measurements with `nas latency "
                    f"adapt`), or drop the confidence; with residuals: "
                    f"{list(hw.interval_metrics()) or '(none)'}",
                )
            if first is None:
                first = (where, confidence)
            elif confidence != first[1]:
                problems.add(
                    where,
                    f"confidence {confidence} differs from {first[0]} = {first[1]}; a search "
                    "has one coverage: give every limit the same confidence",
                )


def _check_space(
    given: str | dict[str, Any], opened: OpenedArtifact, problems: ConfigProblems
) -> None:
    """The config's `space` builds the trained file's network: the same name, or the same
    definition hash (a YAML file or mapping need not repeat the name)."""
    try:
        space = get_space(given)
    except UserError as err:
        problems.add("space", str(err))
        return
    if space.name == opened.space.name or same_space(space, opened.space):
        return
    problems.add(
        "space",
        f"{space.name!r} is not the space of {opened.path}, {opened.space.name!r} "
        "(their definitions differ)",
    )


def load_search_config(path: str | Path, **overrides: Any) -> CheckedSearch:
    """Read a YAML search config, apply the overrides that are not None, and check it."""
    raw = read_yaml_mapping(path, SearchConfigError, "search config")
    return check_search_config(merge_overrides(raw, overrides), str(path))


def _valid_targets(raw: Any) -> dict[str, Target]:
    """The targets of a config whose schema has problems: each device whose own fields are
    valid, so that its limits and options are checked too."""
    targets = split_target_fields(raw.get("targets")) if isinstance(raw, dict) else None
    if not isinstance(targets, dict):
        return {}
    valid = {}
    for device, fields in targets.items():
        try:
            valid[str(device)] = Target.model_validate(fields)
        except ValidationError:
            continue  # its problems were named with the schema's
    return valid


def _device_models(targets: dict[str, Target], problems: ConfigProblems) -> dict[str, lm.CostModel]:
    """Each target's cost model, after checking its limits and options against it; a device
    with a problem is left out (its problems are added)."""
    devices: dict[str, lm.CostModel] = {}
    for device, target in targets.items():
        where = f"targets.{device}"
        try:
            hw = lm.load_hardware(device)
        except lm.HardwareError as err:
            problems.add(where, str(err))
            continue
        before = len(problems.items)
        allowed = list(hw.metrics)
        for name, value in target.limits.items():
            if name not in hw.metrics:
                problems.add(
                    f"{where}.{name}",
                    f"{device} has no metric {name!r}; allowed limits: {allowed}, options: "
                    f"batch, {', '.join(hw.options()) or '(none)'}",
                )
            elif not math.isfinite(value) or value <= 0:
                problems.add(f"{where}.{name}", f"a limit must be > 0 and finite, got {value}")
        for name, value in target.options.items():
            if name in hw.metrics:  # a limit that is not a number: "8", true, [8]
                problems.add(
                    f"{where}.{name}",
                    f"a limit must be a number, got {value!r} ({type(value).__name__}); write "
                    f"it unquoted, e.g. {name}: 8, or with a confidence in (0, 1), {name}: "
                    "{max: 8, confidence: 0.9}",
                )
        if len(problems.items) == before:
            try:
                hw.check_options(target.options)
            except lm.HardwareError as err:
                problems.add(where, str(err))
        if len(problems.items) == before:
            devices[device] = hw
    return devices


def _open_supernet(
    raw: Any, supernet_sha256: str | None, problems: ConfigProblems
) -> OpenedArtifact | None:
    """The trained file the config names, opened (None, with its problem added, if it cannot
    be: the schema names a missing or non-text `supernet`)."""
    path = raw.get("supernet") if isinstance(raw, dict) else None
    if not isinstance(path, str):
        return None
    if not path.strip():
        problems.add(
            "supernet", "required: the path of a trained supernet (its file or its run folder)"
        )
        return None
    try:
        return open_artifact(path, supernet_sha256)
    except CheckpointError as err:
        if supernet_sha256 is not None:  # the file recorded at launch changed: say just that
            raise
        problems.add("supernet", str(err))
        return None


def _predictor_named(raw: Any, opened: OpenedArtifact | None, problems: ConfigProblems) -> None:
    """A config whose schema or supernet has problems still hears that its evaluation needs
    a predictor it does not name (unless its family has none: measured, not predicted)."""
    if not isinstance(raw, dict) or (opened is not None and not opened.family.predicts_quality):
        return
    evaluation = raw.get("evaluation", "predictor")
    if evaluation in ("predictor", "predictor+verify") and not raw.get("predictor"):
        problems.add(
            "predictor",
            f"evaluation {evaluation!r} needs a predictor (fit one with `nas predictor fit`), "
            "or set `evaluation: supernet`",
        )


def _check_devices(
    opened: OpenedArtifact,
    targets: dict[str, Target],
    devices: dict[str, lm.CostModel],
    problems: ConfigProblems,
) -> SearchDomain | None:
    """Each device can cost the supernet's space, and together they share some of it: the
    part every one can cost (nas.domain), or None for all of it."""
    space = opened.space
    for name, hw in devices.items():
        target = targets[name]
        reason = cost_problem(space, name, hw, target.batch, target.options)
        if reason is not None:
            problems.add(f"targets.{name}", reason)
    if problems.items:  # a device left out would make the shared part look larger
        return None
    try:  # refuses targets that share no part of the space
        return search_domain(space, devices, problems.source)
    except SearchConfigError as err:
        for problem in err.problems:
            problems.add(problem["field"], problem["message"])
        return None


def _check_predicted_quality(
    config: SearchConfig, quality: dict[str, str], predictor: Any, problems: ConfigProblems
) -> None:
    """A predictor predicts the primary quality metric, and "<primary>_int8" when it holds
    an int8 drop model (`nas predictor fit --int8-sample N`); any other quality objective
    needs `evaluation: supernet`."""
    if config.measures:
        return
    primary = next(iter(quality))
    predictable = {primary}
    if predictor is not None and predictor.int8_drop is not None:
        predictable.add(f"{primary}_int8")
    for i, objective in enumerate(config.objectives):
        if objective.metric in quality and objective.metric not in predictable:
            problems.add(
                f"objectives.{i}.metric",
                f"{objective.metric!r} is measured, and this predictor does not predict it: "
                f"set `evaluation: supernet`; or fit the predictor with `nas predictor fit "
                f"--int8-sample N`; or search on {primary!r} with `evaluation: "
                f"predictor+verify` and a target `precision: int8`, which measures it on the "
                "front",
            )


def _predictor_path(path: str, opened: OpenedArtifact, problems: ConfigProblems) -> Path | None:
    """The predictor file (a run folder stands for the family's predictor file in it),
    absolute; None, with its problem added, if there is none."""
    names = (opened.family.predictor_file_name,) if opened.family.predictor_file_name else ()
    try:
        resolved = resolve_artifact_path(path, names)
    except CheckpointError as err:
        problems.add("predictor", str(err))
        return None
    if not resolved.is_file():
        problems.add("predictor", f"file not found: {resolved} (fit one with `nas predictor fit`)")
        return None
    return resolved.resolve()
