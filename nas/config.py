"""Search configs: YAML validated with pydantic, then checked against the devices' models.

    name: mnist-three-devices
    supernet: runs/mnist-supernet/supernet.pt
    predictor: runs/mnist-supernet/predictor.pt
    objectives: [{metric: top1, goal: maximize}, {metric: stm32f746.latency_ms, goal: minimize}]
    targets:
      stm32f746: {peak_sram_kb: 320, flash_kb: 1024}          # limits on the device's metrics
      h100-sxm: {latency_ms: 2.0, batch: 64, precision: fp16}  # batch and device options too
    algorithm: {population: 48, generations: 20, crossover_prob: 0.9, seed: 0}
    evaluation: predictor            # predictor | supernet | predictor+verify
    workers: 0                       # 0: in-process; N: N Ray actors
    database: sqlite:///runs/nas.db

A metric is `top1` (accuracy), `macs` or `params` (of the network, the same everywhere), or
`DEVICE.METRIC`. Every error names the field.

A limit is a finite number > 0: a quoted one (`peak_sram_kb: "8"`) is refused with an error
that says so, rather than read as a device option. `supernet` and `predictor` may name a run
folder, which stands for the trained file in it (`supernet.pt` / `gan.pt`, `predictor.pt`);
the validated config holds the absolute path of the file itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

import latency_models as lm
from nas.domain import SearchDomain, search_domain
from nas.errors import SearchConfigError, UserError
from nas.store import DEFAULT_URL
from supernet.errors import CheckpointError
from supernet.family import OpenedArtifact, open_artifact
from supernet.io import (
    field_path,
    format_validation_error,
    merge_overrides,
    read_yaml_mapping,
    resolve_artifact_path,
    short_repr,
)

ACCURACY = "top1"
# Metrics of the network itself, the same on every device: stored once, named without a device.
NETWORK_METRICS = ("macs", "params")
SPEC_OPTIONS = ("batch",)  # applied to the NetworkSpec; the rest go to the device's model
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in 0..2**32-1
PREDICTOR_FILE_NAMES = ("predictor.pt",)  # what a run folder given as `predictor` stands for


def split_metric(key: str) -> tuple[str, str]:
    """ "stm32f746.latency_ms" -> ("stm32f746", "latency_ms"); "macs" -> ("", "macs")."""
    device, _, name = key.rpartition(".")
    return device, name


def join_metric(device: str, name: str) -> str:
    return f"{device}.{name}" if device else name


@dataclass
class OpenedFiles:
    """The trained file and device models opened while validating a config, kept so that
    the process that runs the search opens each of them once."""

    artifact: OpenedArtifact
    devices: dict[str, lm.CostModel]
    domain: SearchDomain | None  # what of the space the devices can cost (nas.domain)
    predictor: Any = None  # the AccuracyPredictor the config names, checked against artifact


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    goal: Literal["maximize", "minimize"]


class Algorithm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # nsga2: Optuna's NSGA-II; random: uniform sampling with the same budget (a baseline)
    sampler: Literal["nsga2", "random"] = "nsga2"
    population: int = Field(48, ge=4)
    generations: int = Field(20, ge=1)
    mutation_prob: float | None = Field(None, ge=0, le=1)  # None: 1 / number of genes
    crossover_prob: float = Field(0.9, ge=0, le=1)
    swapping_prob: float = Field(0.5, ge=0, le=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class Target(BaseModel):
    """One device: limits on its metrics, plus `batch` and model options (e.g. precision)."""

    model_config = ConfigDict(extra="forbid")

    limits: dict[str, float] = Field(default_factory=dict)
    batch: int = Field(1, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "search"
    supernet: str
    predictor: str | None = None
    space: str | None = None  # must match the supernet's; for documentation and checking
    objectives: list[Objective] = Field(default_factory=list)
    targets: dict[str, Target] = Field(min_length=1)
    algorithm: Algorithm = Algorithm()
    evaluation: Literal["predictor", "supernet", "predictor+verify"] = "predictor"
    workers: int = Field(0, ge=0)
    ray_address: str | None = None
    database: str = DEFAULT_URL

    @field_validator("targets", mode="before")
    @classmethod
    def _split_target_fields(cls, value: Any) -> Any:
        """`{latency_ms: 2, batch: 64, precision: fp16}` -> limits / batch / options."""
        if not isinstance(value, dict):
            return value
        out = {}
        for device, fields in value.items():
            if not isinstance(fields, dict) or {"limits", "options"} & set(fields):
                out[device] = fields
                continue
            target: dict[str, Any] = {"limits": {}, "options": {}}
            for key, v in fields.items():
                if key == "batch":
                    target["batch"] = v
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    target["limits"][key] = v
                else:
                    target["options"][key] = v
            out[device] = target
        return out

    # What validating the config opened (not part of the config's data): see OpenedFiles.
    _opened: OpenedFiles | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:  # the data, not what validating it opened
        return isinstance(other, SearchConfig) and self.model_dump() == other.model_dump()

    __hash__ = None  # mutable, like every pydantic model

    @property
    def opened(self) -> OpenedFiles | None:
        return self._opened

    @opened.setter
    def opened(self, value: OpenedFiles | None) -> None:
        self._opened = value

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]


def parse_search_config(raw: Any, source: str = "<config>") -> SearchConfig:
    """Validate a config mapping: schema, devices, their metrics, options and objectives.

    The device models and the trained file opened to check it stay with the config
    (`config.opened`), so a search started from it reads neither again."""
    if not isinstance(raw, dict):
        raise SearchConfigError(f"search config {source} must be a YAML mapping")
    try:
        config = SearchConfig.model_validate(raw)
    except ValidationError as err:
        raise SearchConfigError(_validation_message(err, source)) from None
    quality = check_against_devices(config, source)
    if not config.objectives:  # the first quality metric, and every device's latency
        metric, goal = next(iter(quality.items()))
        if config.evaluation == "supernet" and f"{metric}_int8" in measured_quality(
            config, quality
        ):  # a target deploys int8: search on quality after quantization
            metric = f"{metric}_int8"
        config.objectives = [Objective(metric=metric, goal=goal)] + [
            Objective(metric=f"{device}.latency_ms", goal="minimize") for device in config.targets
        ]
    return config


def int8_targets(config: SearchConfig) -> list[str]:
    """The targets that say `precision: int8` (their networks ship quantized)."""
    return [d for d, t in config.targets.items() if t.options.get("precision") == "int8"]


def measured_quality(config: SearchConfig, quality: dict[str, str]) -> tuple[str, ...]:
    """The quality metrics (of the family's `quality`) a search measures: the primary one,
    those its objectives name, and "<primary>_int8" (quality after static int8
    quantization) where a target says `precision: int8`."""
    primary = next(iter(quality))
    wanted = [primary, *(o.metric for o in config.objectives if o.metric in quality)]
    if int8_targets(config) and f"{primary}_int8" in quality:
        wanted.append(f"{primary}_int8")
    return tuple(dict.fromkeys(wanted))


def _validation_message(err: ValidationError, source: str) -> str:
    """One problem: one line naming the field and the value given; several: one line each."""
    problems = err.errors()
    if len(problems) != 1:
        return format_validation_error(err, f"search config {source}")
    item = problems[0]
    given = "" if item["type"] == "missing" else f", got {short_repr(item.get('input'))}"
    return f"invalid search config {source}: {field_path(item['loc'])}: {item['msg']}{given}"


def check_against_devices(config: SearchConfig, source: str) -> dict[str, str]:
    """Check targets, options and objectives; returns the quality metrics of the checkpoint."""
    metrics = set(NETWORK_METRICS)
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
        metrics.update(f"{device}.{m}" for m in hw.metrics if m not in NETWORK_METRICS)
        devices[device] = hw
    try:  # after the targets: those need no files, so their errors come first
        opened = open_artifact(config.supernet)
    except CheckpointError as err:
        raise SearchConfigError(f"invalid search config {source}: supernet: {err}") from None
    config.supernet = str(opened.path)  # a run folder stands for its trained file
    family = opened.family
    domain = search_domain(opened.space, devices, source)  # refuses targets sharing none
    metrics.update(family.quality_metrics)
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
    predictor = None
    if config.predictor:
        config.predictor = str(_predictor_path(config.predictor, source))
        predictor = _load_predictor(config.predictor, opened, source)
    _check_predicted_quality(config, family.quality_metrics, predictor, source)
    config.opened = OpenedFiles(opened, devices, domain, predictor)
    return family.quality_metrics


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


def _load_predictor(path: str, opened: OpenedArtifact, source: str) -> Any:
    """The predictor, read once here and kept for the search (config.opened)."""
    from supernet.mbconv.predictor import load_predictor

    try:
        return load_predictor(path, opened)
    except UserError as err:
        raise SearchConfigError(f"invalid search config {source}: predictor: {err}") from None


def _predictor_path(path: str, source: str) -> Path:
    """The predictor file (a run folder stands for the predictor.pt in it), absolute."""
    try:
        resolved = resolve_artifact_path(path, PREDICTOR_FILE_NAMES)
    except CheckpointError as err:
        raise SearchConfigError(f"invalid search config {source}: predictor: {err}") from None
    if not resolved.is_file():
        raise SearchConfigError(
            f"invalid search config {source}: predictor: file not found: {resolved} "
            "(fit one with `nas predictor fit`)"
        )
    return resolved.resolve()


def load_search_config(path: str | Path, **overrides: Any) -> SearchConfig:
    raw = read_yaml_mapping(path, SearchConfigError, "search config")
    return parse_search_config(merge_overrides(raw, overrides), str(path))
