"""The JSON the HTTP API returns, as pydantic models: what `/openapi.json` documents.

Each model matches what the core function behind its route returns (nas.core); the routes
do not reshape data to fit them. Where a payload has open-ended keys (metrics, a search's
targets, a model card, a device model's parameters) the model types them as a mapping or
allows extra keys. Numbers keep their JSON type (`Number`: an int stays an int).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from nas.config import Objective

T = TypeVar("T")

Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class ConfigProblem(BaseModel):
    """One problem of a search config: the field, as the config names it, and what is wrong."""

    field: str = Field(examples=["algorithm.population", "targets.stm32f746.peak_sram_kb"])
    message: str = Field(examples=["must be at least 4, got 2"])


class ErrorModel(BaseModel):
    """Every error: the error's class name and a message naming the bad field or id."""

    error: str = Field(examples=["NotFoundError"])
    detail: str = Field(examples=["no search with id 404"])
    fields: list[str] | None = Field(
        None, description="the bad parameters (a request validation error only)"
    )
    problems: list[ConfigProblem] | None = Field(
        None, description="every problem of a search config, each beside its field"
    )


# ----- listings -------------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    """One page of a listing: the rows, how many there are in all, where the page starts."""

    items: list[T]
    total: int
    offset: int


class Items(BaseModel, Generic[T]):
    """A whole (short) listing."""

    items: list[T]


# ----- searches -------------------------------------------------------------------------------


class SearchTarget(BaseModel):
    """One device of a search: limits on its metrics, the batch, the model's options."""

    limits: dict[str, Number]
    confidence: dict[str, Number] = Field(
        default_factory=dict,
        description="metric -> coverage: that limit is met by the upper bound of the metric's "
        "prediction interval at this coverage (`METRIC_high`), not by its predicted value",
    )
    batch: int
    options: dict[str, Any]


class SearchSummary(BaseModel):
    """A search: status, progress, best values, timing and the parts of its config."""

    id: int
    name: str
    status: str = Field(examples=["running", "completed"])
    finished: bool
    space: str
    generations: str = Field(description="done/total", examples=["3/20"])
    candidates: int
    evaluated: int = Field(description="distinct archs evaluated")
    feasible: int
    best: dict[str, Number] = Field(description="metric -> best feasible value")
    seconds: float
    message: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    evaluation: str | None = Field(examples=["predictor", "supernet", "predictor+verify", "active"])
    targets: dict[str, SearchTarget] | None
    objectives: list[Objective] | None


class SearchDomain(BaseModel):
    """The values of the space's resolution gene every target device can cost."""

    gene: str
    choices: list[int]
    restricted_by: dict[str, str] = Field(description="device -> why")


class SearchInfo(SearchSummary):
    """One search, with the part of its space its targets restrict it to."""

    domain: SearchDomain | str | None = Field(
        description="None: the whole space; a text when a device can no longer be loaded"
    )
    config: dict[str, Any] | None = Field(
        None,
        description="the config as checked at launch (files as absolute paths, the default "
        "objectives filled in; without its database): launching it again repeats the search",
    )
    space_info: SpaceSummary | None = Field(
        None,
        description="its space as GET /spaces lists a preset; also for a space defined as "
        "data (rebuilt from the definition the search stored); None: it cannot be rebuilt",
    )


class CheckedConfig(BaseModel):
    """A search config that passed every check (a dry run of a launch)."""

    config: dict[str, Any] = Field(
        description="as checked: files as absolute paths, the default objectives filled in"
    )


class SearchStatus(BaseModel):
    """What a cancel or resume did: the search's status now."""

    id: int
    status: str = Field(examples=["cancelling", "running"])


class Interval(BaseModel):
    """A predicted metric's prediction interval (latency_models.uncertainty)."""

    low: Number
    high: Number


class CandidateRow(BaseModel):
    """A candidate as the search stored it: every metric (quality, `macs`, `params`,
    `device.metric`) is a key of its own; its metrics' prediction intervals are in `bounds`."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Number] = Field(init=False)  # the metrics

    candidate: int = Field(description="its trial number")
    generation: int
    arch_id: str
    feasible: bool
    top1_measured: float | None
    coverage: float | None = Field(
        None,
        description="the coverage of every interval in `bounds` (the search's confidence, "
        "0.9 by default); null when the candidate has no bounds",
        examples=[0.9],
    )
    bounds: dict[str, Interval] = Field(
        default_factory=dict,
        description="metric -> its two-sided prediction interval at `coverage`, for the "
        "metrics whose cost model states its residuals (and quality, where the predictor "
        "gives bounds); a limit with confidence is met by `high`",
        examples=[{"h100-sxm.latency_ms": {"low": 1.71, "high": 2.2}}],
    )
    arch: dict[str, Any]


class DeviceCost(BaseModel):
    """A candidate's predicted cost on one device (`error` where its model cannot cost it)."""

    target: bool = Field(description="a device the search targeted (at its batch and options)")
    batch: int
    options: dict[str, Any]
    costs: dict[str, Number] | None = None
    error: str | None = None


class CandidateDetail(CandidateRow):
    """One candidate, with its measured quality and its cost on every registered device."""

    measured: dict[str, Number] = Field(
        description="quality measured on the supernet: every quality metric where the search "
        "measured it, else what a verification measured (empty: predicted only)"
    )
    quality_source: Literal["predictor", "supernet"] = Field(
        description="where the stored quality (its plain keys, e.g. `top1`) came from: "
        "`supernet`, measured by the search (evaluation supernet or active), or `predictor`"
    )
    devices: dict[str, DeviceCost]


class Points(BaseModel):
    """Every candidate's values of some metrics, column by column, by trial."""

    search: int
    trial: list[int]
    feasible: list[bool]
    measured: list[int] = Field(
        description="the positions (indices into `trial` and each metric's list) of the "
        "candidates whose quality was measured on the supernet: every candidate of a "
        "`supernet` or `active` search, the verified front of a `predictor+verify` one; "
        "the others' quality is predicted",
        examples=[[0, 1, 2]],
    )
    metrics: dict[str, list[float | None]] = Field(description="metric -> one value a trial")


class Front(BaseModel):
    """A Pareto front, as `nas pareto --json` prints it."""

    search: int
    objectives: list[Objective]
    where: list[str] = Field(
        description="the filters applied (beyond the search's own limits, which every "
        "feasible candidate meets)"
    )
    total: int = Field(description="rows on the whole front")
    offset: int = Field(description="where `front` starts in the sorted front")
    sort: str | None = Field(description="what `front` is sorted by (null: the front's order)")
    order: Literal["asc", "desc"] | None
    front: list[CandidateRow] = Field(description="the page's rows (default: the whole front)")


# ----- exports --------------------------------------------------------------------------------


class ExportFile(BaseModel):
    name: str
    format: str = Field(examples=["onnx", "card"])
    bytes: int | None = Field(description="as written (None: an old export whose file is gone)")
    sha256: str | None
    available: bool = Field(
        description="still in its folder as written; false: deleted, moved or replaced since"
    )
    url: str = Field(description="where to download it")


class ExportSummary(BaseModel):
    """An export, made by any door (a job of this API or `nas export`): its candidate,
    formats, status, phase while it runs, time taken and files (once completed)."""

    id: int
    search: int
    search_name: str = Field(description="the search's name, as launched")
    candidate: int
    status: str = Field(examples=["queued", "running", "completed", "failed"])
    finished: bool
    message: str | None
    phase: str = Field(examples=["writing onnx", "measuring int8 top-1"])
    formats: list[str]
    created_at: Timestamp
    finished_at: Timestamp | None
    seconds: float | None = Field(description="from queued or started to finished (or now)")
    files: list[ExportFile]


class ExportInfo(ExportSummary):
    """An export with its model card and files (once completed)."""

    card: dict[str, Any] | None


class ExportFormat(BaseModel):
    name: str = Field(examples=["onnx_int8"])
    label: str
    file: str = Field(examples=["model.int8.onnx"])
    default: bool = Field(description="written when an export names no formats")
    available: bool
    unavailable: str | None = Field(description="why this server cannot write it now")


class ExportFormats(BaseModel):
    """What an export of a search can write: its family's formats, the defaults (with the
    defaults left out and why) and the quantizations that apply."""

    formats: list[ExportFormat]
    default: list[str]
    skipped: dict[str, str]
    quantize: list[str]


class ExportQueued(ExportInfo):
    url: str = Field(description="where to poll it")


# ----- devices, spaces, families, trained files -----------------------------------------------


class HardwareSummary(BaseModel):
    """A device's cost model, as `nas hardware show --json` prints it; each model kind adds
    its key parameters as keys of their own."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str = Field(examples=["gpu", "mcu", "lut", "measured", "learned"])
    description: str
    metrics: list[str]
    options: dict[str, list[Any]] = Field(description="option -> allowed values (default first)")
    source: str = Field(
        description="the profile file: latency_models/profiles/NAME.yaml for a shipped one, "
        "the file name alone for one of the server's own profile folder",
        examples=["latency_models/profiles/h100-sxm.yaml", "my-board.yaml"],
    )


class SpaceSummary(BaseModel):
    """A preset search space: its genes and their choices, its size, its model family.
    Which descriptive keys it has depends on the kind of space."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    reference: str | None = None
    input_channels: int | None = None
    num_classes: int | None = None
    input: str | None = None
    output: str | None = None
    genes: dict[str, Any]
    widths_at_max: dict[str, Any] | None = None
    layers: list[str] | None = None
    widths: dict[int, int] | None = Field(None, description="resolution -> channels")
    size: int = Field(description="how many archs the space holds")
    family: str | None


class FamilySummary(BaseModel):
    """A model family: its file name and its quality metrics with their goals."""

    kind: str
    description: str
    file_name: str
    quality_metrics: dict[str, str] = Field(description="metric -> goal; the first is primary")
    predicts_quality: bool
    quantizes_int8: bool


class SupernetFile(BaseModel):
    id: int
    sha256: str
    path: str
    space: str
    family: str | None


class PredictorFile(BaseModel):
    id: int
    sha256: str
    path: str
    supernet_id: int | None


class TrainedFiles(BaseModel):
    """The trained files searches have used, by SHA-256."""

    supernets: list[SupernetFile]
    predictors: list[PredictorFile]
    working_folder: str | None = Field(
        None, description="the server's working folder: a relative path in a config is read from it"
    )
