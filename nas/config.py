"""The search config's schema, validated with pydantic (nas.resources checks the rest:
devices, files, objectives, and returns what checking opened).

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

`algorithm.population` is 4..100,000 and `algorithm.generations` 1..1,000,000
(MAX_POPULATION, MAX_GENERATIONS).

A limit is a finite number > 0: a quoted one (`peak_sram_kb: "8"`) is refused with an error
that says so, rather than read as a device option. `supernet` and `predictor` may name a run
folder, which stands for the trained file in it (its family's file name); the checked
config holds the absolute path of the file itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nas.errors import SearchConfigError
from nas.store import DEFAULT_URL
from supernet.io import (
    field_path,
    format_validation_error,
    short_repr,
)

ACCURACY = "top1"
# Metrics of the network itself, the same on every device: stored once, named without a device.
NETWORK_METRICS = ("macs", "params")
SPEC_OPTIONS = ("batch",)  # applied to the NetworkSpec; the rest go to the device's model
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in 0..2**32-1
# A search's budget is population x generations evaluations: far above these, a search would
# never finish (and a huge population fails deep inside Optuna), so they are refused here.
MAX_POPULATION = 100_000
MAX_GENERATIONS = 1_000_000


def split_metric(key: str) -> tuple[str, str]:
    """ "stm32f746.latency_ms" -> ("stm32f746", "latency_ms"); "macs" -> ("", "macs")."""
    device, _, name = key.rpartition(".")
    return device, name


def join_metric(device: str, name: str) -> str:
    return f"{device}.{name}" if device else name


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    goal: Literal["maximize", "minimize"]


class Algorithm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # nsga2: Optuna's NSGA-II; random: uniform sampling with the same budget (a baseline)
    sampler: Literal["nsga2", "random"] = "nsga2"
    population: int = Field(48, ge=4, le=MAX_POPULATION)
    generations: int = Field(20, ge=1, le=MAX_GENERATIONS)
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

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]


def read_search_config(raw: Any, source: str = "<config>") -> SearchConfig:
    """The config's schema only: fields, types and ranges, as a new SearchConfig (nothing
    opened, nothing filled in). `nas.resources.check_search_config` checks the rest."""
    if not isinstance(raw, dict):
        raise SearchConfigError(f"search config {source} must be a YAML mapping")
    try:
        return SearchConfig.model_validate(raw)
    except ValidationError as err:
        raise SearchConfigError(_validation_message(err, source)) from None


def default_objectives(config: SearchConfig, quality: dict[str, str]) -> list[Objective]:
    """The objectives of a config that names none: the family's first quality metric (after
    int8 quantization, where a target deploys int8 and quality is measured), and every
    device's latency."""
    metric, goal = next(iter(quality.items()))
    if config.evaluation == "supernet" and f"{metric}_int8" in measured_quality(config, quality):
        metric = f"{metric}_int8"
    return [Objective(metric=metric, goal=goal)] + [
        Objective(metric=f"{device}.latency_ms", goal="minimize") for device in config.targets
    ]


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
