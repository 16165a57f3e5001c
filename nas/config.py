"""The search config's schema, validated with pydantic (nas.resources checks the rest:
devices, files, objectives, and returns what checking opened).

    name: mnist-three-devices
    supernet: runs/mnist-supernet/supernet.pt
    predictor: runs/mnist-supernet/predictor.pt
    objectives: [{metric: top1, goal: maximize}, {metric: stm32f746.latency_ms, goal: minimize}]
    targets:
      stm32f746: {peak_sram_kb: 320, flash_kb: 1024}          # limits on the device's metrics
      h100-sxm: {latency_ms: 2.0, batch: 64, precision: fp16}  # batch and device options too
      rtx4090: {latency_ms: {max: 1.5, confidence: 0.9}}     # the 90% upper bound must meet it
    algorithm: {population: 48, generations: 20, crossover_prob: 0.9, seed: 0}
    evaluation: predictor            # predictor | supernet | predictor+verify | active
    # budget: 300                    # active only: subnets measured on the supernet, chosen
    # active: {initial: 20, batch: 48}  # by a predictor refit each round (nas.search.active)
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

A limit may ask for confidence: `latency_ms: {max: 2.0, confidence: 0.9}` means the upper
bound of the metric's two-sided prediction interval at coverage 0.9 (latency_models.
uncertainty: 5% of true values above it, for a model whose residuals hold) must meet 2.0, not
the predicted value. The device's profile must state residuals for that metric
(`hw.interval_metrics()`). A search has one coverage: every confidence in it must be the same,
and every candidate's bounds (`DEVICE.METRIC_low`, `DEVICE.METRIC_high`) are computed at it;
with no confidence anywhere they are computed at 0.9 (DEFAULT_COVERAGE), for display only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from latency_models.uncertainty import DEFAULT_COVERAGE, bound_keys
from nas.errors import SearchConfigError
from nas.store import DEFAULT_URL
from supernet.io import MAX_PROBLEMS_SHOWN, field_path, short_repr

ACCURACY = "top1"
# Metrics of the network itself, the same on every device: stored once, named without a device.
NETWORK_METRICS = ("macs", "params")
SPEC_OPTIONS = ("batch",)  # applied to the NetworkSpec; the rest go to the device's model
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in 0..2**32-1
# A search's budget is population x generations evaluations: far above these, a search would
# never finish (and a huge population fails deep inside Optuna), so they are refused here.
MAX_POPULATION = 100_000
MAX_GENERATIONS = 1_000_000
# samplers that fit a model to every result (nas.search.sampler): for supernet-measured searches
MODEL_BASED_SAMPLERS = ("motpe", "gp")
CONFIDENT_LIMIT = ("max", "confidence")  # the fields of `latency_ms: {max: 2, confidence: 0.9}`
# `evaluation: active` (nas.search.active): the fewest measurements a budget may name (the
# initial sample is at least MIN_ACTIVE_INITIAL of them, and the loop needs rounds after it)
MIN_ACTIVE_BUDGET = 30
MIN_ACTIVE_INITIAL = 20


def split_metric(key: str) -> tuple[str, str]:
    """ "stm32f746.latency_ms" -> ("stm32f746", "latency_ms"); "macs" -> ("", "macs")."""
    device, _, name = key.rpartition(".")
    return device, name


def join_metric(device: str, name: str) -> str:
    return f"{device}.{name}" if device else name


def split_target_fields(value: Any) -> Any:
    """`{latency_ms: 2, batch: 64, precision: fp16}` -> limits / batch / options (per device);
    `latency_ms: {max: 2, confidence: 0.9}` -> a limit and its confidence. Any other mapping
    stays an option (nas.resources names it as a limit of the wrong form)."""
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
            elif _is_number(v):
                target["limits"][key] = v
            elif (
                isinstance(v, dict) and _is_number(v.get("max")) and set(v) <= set(CONFIDENT_LIMIT)
            ):
                target["limits"][key] = v["max"]
                if "confidence" in v:
                    target.setdefault("confidence", {})[key] = v["confidence"]
            else:
                target["options"][key] = v
        out[device] = target
    return out


def _is_number(value: Any) -> bool:
    """A limit is written as a number: a quoted one ("8") is not read as one."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    goal: Literal["maximize", "minimize"]


class Algorithm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # nsga2 / nsga3: Optuna's genetic samplers, a generation at a time (nsga2: the default,
    # what makes 1,000+ predictor-evaluated candidates/s); motpe / gp: model-based, for
    # searches measured on the supernet; auto: gp for a supernet-measured search of at most
    # 300 candidates, else nsga2; random: uniform draws with the same budget (a baseline).
    # See nas.search.sampler.
    sampler: Literal["nsga2", "nsga3", "motpe", "gp", "auto", "random"] = "nsga2"
    population: int = Field(48, ge=4, le=MAX_POPULATION)
    generations: int = Field(20, ge=1, le=MAX_GENERATIONS)
    mutation_prob: float | None = Field(None, ge=0, le=1)  # None: 1 / number of genes
    crossover_prob: float = Field(0.9, ge=0, le=1)
    swapping_prob: float = Field(0.5, ge=0, le=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class ActiveOptions(BaseModel):
    """`evaluation: active`: the initial space-filling sample and the batch measured per round
    (None: the defaults of `active_plan`), and successive halving: `halving`, the fraction of
    the validation split each subnet of a later round is measured on first (None: off; see
    supernet.family.PartialMeasurement)."""

    model_config = ConfigDict(extra="forbid")

    initial: int | None = Field(None, ge=1)
    batch: int | None = Field(None, ge=1)
    halving: float | None = Field(None, gt=0, lt=1)


class Target(BaseModel):
    """One device: limits on its metrics, plus `batch` and model options (e.g. precision)."""

    model_config = ConfigDict(extra="forbid")

    limits: dict[str, float] = Field(default_factory=dict)
    # metric -> coverage in (0, 1): that limit checks the upper bound of its interval
    confidence: dict[str, Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=dict)
    batch: int = Field(1, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "search"
    supernet: str
    predictor: str | None = None
    # must build the supernet's network (a preset name, a YAML file or a mapping); for
    # documentation and checking. A checked config holds the definition of a space that is
    # not a preset, so the search row rebuilds its space without any file.
    space: str | dict[str, Any] | None = None
    objectives: list[Objective] = Field(default_factory=list)
    targets: dict[str, Target] = Field(min_length=1)
    algorithm: Algorithm = Algorithm()
    # active: measures `budget` subnets on the supernet, chosen by a predictor it refits to
    # them every round (nas.search.active)
    evaluation: Literal["predictor", "supernet", "predictor+verify", "active"] = "predictor"
    budget: int | None = Field(None, ge=1)  # measurements, with `evaluation: active` only
    active: ActiveOptions | None = None
    workers: int = Field(0, ge=0)
    ray_address: str | None = None
    database: str = DEFAULT_URL

    @field_validator("targets", mode="before")
    @classmethod
    def _split_target_fields(cls, value: Any) -> Any:
        return split_target_fields(value)

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def measures(self) -> bool:
        """Every candidate's quality is measured on the supernet."""
        return self.evaluation in ("supernet", "active")

    @property
    def generations_total(self) -> int:
        """The generations the search plans: its algorithm's, or an active search's rounds."""
        if self.evaluation == "active":
            return active_plan(self).rounds
        return self.algorithm.generations

    @property
    def coverage(self) -> float:
        """The coverage of every candidate's bounds: the search's confidence (one per search,
        checked by nas.resources), or DEFAULT_COVERAGE where no limit asks for any."""
        given = [c for t in self.targets.values() for c in t.confidence.values()]
        return given[0] if given else DEFAULT_COVERAGE


@dataclass(frozen=True)
class ActivePlan:
    budget: int
    initial: int
    batch: int
    halving: float | None = None

    @property
    def rounds(self) -> int:
        """Round 0 measures `initial`, each later one `batch` (the last one what is left)."""
        return 1 + -(-max(self.budget - self.initial, 0) // self.batch)


def active_plan(config: SearchConfig) -> ActivePlan:
    """An active search's budget, initial sample (default max(20, 5% of the budget), never
    more than the budget) and batch per round (default: the algorithm's population)."""
    budget = config.budget or 0
    options = config.active or ActiveOptions()
    initial = options.initial or max(MIN_ACTIVE_INITIAL, round(0.05 * budget))
    batch = options.batch or config.algorithm.population
    return ActivePlan(budget, min(initial, budget), batch, options.halving)


@dataclass(frozen=True)
class Limit:
    """A limit of a search: `metric` <= `value`, checked on `checked`: the metric itself, or
    its upper bound ("DEVICE.METRIC_high") where the limit asks for confidence. The one place
    that decides which value a limit checks (the search's constraints, the front's filters)."""

    metric: str  # "device.metric"
    value: float
    checked: str

    def value_of(self, metrics: dict[str, float]) -> float:
        """The value this limit checks in a candidate's metrics. An exact metric stores no
        bounds (nas.evaluation.without_exact_bounds): its upper bound is its value."""
        return metrics.get(self.checked, metrics[self.metric])


def limits_of(config: SearchConfig) -> list[Limit]:
    return [
        Limit(
            f"{device}.{name}",
            value,
            f"{device}.{bound_keys(name)[1] if name in target.confidence else name}",
        )
        for device, target in config.targets.items()
        for name, value in target.limits.items()
    ]


class ConfigProblems:
    """Every problem of one search config, each with the field it is about: checking goes on
    past the first, so a user (the form, `nas search launch`) sees them all at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def fields(self) -> set[str]:
        return {p["field"] for p in self.items}

    def error(self) -> SearchConfigError:
        """One problem: one line naming the field; several: a line each under a header."""
        head = f"invalid search config {self.source}:"
        if len(self.items) == 1:
            (item,) = self.items
            return SearchConfigError(f"{head} {item['field']}: {item['message']}", self.items)
        lines = [f"  {p['field']}: {p['message']}" for p in self.items[:MAX_PROBLEMS_SHOWN]]
        if len(self.items) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(self.items) - MAX_PROBLEMS_SHOWN} more problems")
        return SearchConfigError("\n".join([head, *lines]), self.items)

    def raise_any(self) -> None:
        if self.items:
            raise self.error()


def read_search_config(
    raw: Any, source: str = "<config>", problems: ConfigProblems | None = None
) -> SearchConfig | None:
    """The config's schema only: fields, types and ranges, as a new SearchConfig (nothing
    opened, nothing filled in). `nas.resources.check_search_config` checks the rest. Every
    schema problem is raised at once; with `problems`, they are added there instead and
    None is returned, so that checking can go on with the other fields."""
    own = problems is None
    problems = problems if problems is not None else ConfigProblems(source)
    if not isinstance(raw, dict):
        problems.add("<root>", "a search config must be a YAML mapping (field: value lines)")
    else:
        try:
            return SearchConfig.model_validate(raw)
        except ValidationError as err:
            for item in err.errors(include_url=False):
                problems.add(config_field(item["loc"]), plain_message(item))
    if own:
        problems.raise_any()
    return None


def config_field(loc: tuple[Any, ...]) -> str:
    """The field as a config names it: a target's limits and options are written beside
    its batch (`targets.stm32f746.peak_sram_kb`), not under `limits:`."""
    parts = list(loc)
    if len(parts) >= 4 and parts[0] == "targets" and parts[2] in ("limits", "options"):
        del parts[2]
    elif len(parts) >= 4 and parts[0] == "targets" and parts[2] == "confidence":
        parts[2:4] = [parts[3], "confidence"]  # written `latency_ms: {max: 2, confidence: 0.9}`
    return field_path(tuple(parts))


_MODELS: dict[str, type[BaseModel]] = {
    "": SearchConfig,
    "algorithm": Algorithm,
    "active": ActiveOptions,
}


def plain_message(item: Any) -> str:
    """A pydantic problem in plain words, with the value given (pydantic's own phrases, such
    as "Dictionary should have at least 1 item after validation", mean little to a user)."""
    kind, loc, ctx = item["type"], item["loc"], item.get("ctx") or {}
    where = str(loc[0]) if loc else ""
    if kind == "missing":
        return {
            "supernet": "required: the path of a trained supernet (its file or its run folder)",
            "targets": "required: name at least one device",
        }.get(where if len(loc) == 1 else "", "required")
    if kind == "too_short" and loc == ("targets",):
        return "name at least one device"
    got = f", got {short_repr(item.get('input'))}"
    if kind == "extra_forbidden":
        model = _MODELS.get(".".join(str(p) for p in loc[:-1]))
        allowed = f"; allowed: {', '.join(model.model_fields)}" if model else ""
        return f"unknown field{allowed}"
    words = {
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be more than {ctx.get('gt')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "int_type": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "finite_number": "must be a finite number",
        "string_type": "must be text",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "dict_type": "must be a mapping (name: value)",
        "model_type": "must be a mapping (name: value)",
        "model_attributes_type": "must be a mapping (name: value)",
        "list_type": "must be a list",
        "literal_error": f"must be one of {ctx.get('expected')}",
    }
    message = words.get(kind) or str(item["msg"]).replace("Input should be", "must be")
    return message + got


def default_objectives(config: SearchConfig, quality: dict[str, str]) -> list[Objective]:
    """The objectives of a config that names none: the family's first quality metric (after
    int8 quantization, where a target deploys int8 and quality is measured), and every
    device's latency."""
    metric, goal = next(iter(quality.items()))
    if config.measures and f"{metric}_int8" in measured_quality(config, quality):
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
