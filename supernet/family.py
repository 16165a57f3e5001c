"""Model families: how each kind of trained file is loaded, measured, exported and shown.

The service core (nas/) never asks which kind of network it holds, and imports no family's
modules: everything it needs of a family goes through `ModelFamily`. Its file names and
format, its quality metrics, its supernet builder, its training (config, trainer), and
`load`, which turns an `Artifact` already read into a `TrainedModel`. That trained model
measures quality (with an evaluator made once per process), prepares an exportable module
and renders samples. A family whose quality a predictor can stand in for has
`predictors` (fit, measure, load); one whose subnets can be fine-tuned has `finetuning`.
Two families exist: the MBConv classifiers (supernet.mbconv.family) and the Anycost GAN
generators (supernet.anycost.family); a new family is a folder and one registration.

    opened = open_artifact("runs/mnist-supernet")   # one read and one hash of the file
    opened.family.quality_metrics                    # {"top1": "maximize"}
    trained = opened.trained()                       # the network, built once per process
    trained.measure_quality(archs)                   # [{"top1": 0.97}, ...]
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from supernet.data import Dataset, DatasetConfig, load_dataset
from supernet.errors import CheckpointError, ConfigError
from supernet.io import (
    Artifact,
    format_validation_error,
    merge_overrides,
    read_artifact,
    read_yaml_mapping,
    resolve_artifact_path,
)
from supernet.run import ResumableRun, TrainResult
from supernet.space import Arch, SearchSpace, get_space, saved_space

Metrics = dict[str, float]


@dataclass(frozen=True)
class PartialMeasurement:
    """Successive halving (an active search's `active.halving`): each arch's primary quality
    metric is first measured on `fraction` of the validation split, and goes on to the whole
    split only where the optimistic end of that first figure (a confidence bound) beats
    `needed[arch_id]`, the value the arch needs to join the measured front (an arch not in
    `needed` always goes on). Each measured row says how many validation items its figure
    used (`images_key(primary)`)."""

    fraction: float
    needed: Mapping[str, float]


def images_key(metric: str) -> str:
    """The metric that records how many validation items `metric`'s figure used."""
    return f"{metric}_images"


@dataclass
class ExportableModel:
    """What an export writes, whatever the family: a plain module and how to check it."""

    module: nn.Module
    space: str
    example: torch.Tensor  # traced by the ONNX exporter
    check_inputs: torch.Tensor  # another batch size, to check the dynamic batch axis too
    input_name: str
    output_name: str
    card: dict[str, Any]  # the family's part of the model card (input, output, quality)
    extra_files: dict[str, Callable[[Path], Path]] = field(default_factory=dict)
    # a labelled split ("train", "val", "test") as the module's inputs (preprocessed, at its
    # resolution) and labels: for families whose files can be quantized and measured, where
    # the training images calibrate and the other splits measure top-1; None: no such data
    labelled: Callable[[str], tuple[torch.Tensor, torch.Tensor]] | None = None


class Evaluator(Protocol):
    """Measures subnets of a trained supernet (the family's figures, e.g. top-1 and loss)."""

    def evaluate(self, arch: Arch) -> Any: ...

    def evaluate_many(self, archs: Sequence[Arch], progress: bool = False) -> list[Any]: ...


@dataclass(kw_only=True)
class TrainedModel(ABC):
    """A trained supernet of some family, loaded from one `Artifact`; each family's subclass
    adds its networks (a classifier's `net`, a GAN's `generator` and `feature_net`)."""

    artifact: Artifact
    space: SearchSpace
    dataset_config: DatasetConfig  # the data it was trained on, measured on
    meta: dict[str, Any] = field(default_factory=dict)  # settings, history, final figures

    def dataset(self) -> Dataset:
        return load_dataset(self.dataset_config)

    @abstractmethod
    def evaluator(self, dataset: Dataset | None = None, **kwargs: Any) -> Evaluator:
        """A new evaluator of subnets with the training run's settings unless overridden."""

    def quality_evaluator(self) -> Evaluator:
        """The evaluator `measure_quality` uses, made once per process and kept: making one
        loads the dataset (and, for generators, the real images' statistics)."""
        kept = self.__dict__.get("_quality_evaluator")
        if kept is None:
            kept = self.__dict__["_quality_evaluator"] = self.evaluator()
        return kept

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def sha256(self) -> str:
        return self.artifact.sha256

    @abstractmethod
    def measure_quality(
        self,
        archs: Sequence[Arch],
        metrics: Collection[str] = (),
        partial: PartialMeasurement | None = None,
    ) -> list[Metrics]:
        """The family's quality metrics of each arch, measured with the trained network;
        `partial`: by successive halving, in families that `measures_partially`."""

    @abstractmethod
    def exportable(
        self, arch: Arch, searched: Metrics, weights: dict[str, Any] | None = None
    ) -> ExportableModel:
        """The static subnet of `arch`, measured afresh, ready to be written; `searched`
        holds the quality values the search recorded (predicted or measured); `weights`, a
        fine-tuned weights file's data (`nas finetune`), replaces the inherited weights."""

    def render_samples(
        self,
        path: Path,
        archs: Sequence[tuple[str, Arch]] | None = None,
        seed: int = 0,
        columns: int = 8,
    ) -> Path | None:
        """A picture of what the subnets produce, where the family has one (generators):
        one row per (label, arch) (None: the family's standard rows), `columns` samples
        each from the same `seed`."""
        return None


class ModelFamily(ABC):
    kind: str  # the name recorded in model cards: "classifier", "gan"
    description: str  # for messages: "classifier supernet"
    file_format: str  # the "format" field of its trained file
    file_name: str  # the trained file in a run folder
    quality_metrics: dict[str, str]  # metric -> "maximize" | "minimize", first is primary
    rank: int = 100  # where the doors list it: the first family is the default they offer
    # Whether an accuracy predictor can stand in for measuring (classifiers); otherwise
    # every candidate is measured with the trained network.
    predicts_quality: bool = False
    # The predictor file a run folder given as `predictor` stands for (None: no predictor).
    predictor_file_name: str | None = None
    # Whether its subnets can ship as int8 files: it has labelled images to calibrate the
    # quantization on and to measure the int8 file's quality with (classifiers).
    quantizes_int8: bool = False
    # Whether its primary quality metric can be measured on part of the validation split
    # first (successive halving: `PartialMeasurement`), a confidence bound saying whether
    # to go on (classifiers: top-1 is a proportion).
    measures_partially: bool = False

    @abstractmethod
    def handles(self, space: SearchSpace) -> bool:
        """Whether `space` is one of this family's spaces."""

    @abstractmethod
    def build(self, space: SearchSpace) -> nn.Module:
        """The untrained elastic supernet of a space."""

    @abstractmethod
    def load(self, artifact: Artifact) -> TrainedModel:
        """The trained model held by an artifact of this family's format."""

    def load_trained(self, path: str | os.PathLike) -> TrainedModel:
        """The trained model in a file of this family (or the run folder holding it)."""
        artifact = read_artifact(resolve_artifact_path(path, (self.file_name,)), self.file_format)
        return self.load(artifact)

    # ----- training ---------------------------------------------------------------------------

    train_config_name: str = "config"  # how messages name its training config

    @abstractmethod
    def train_config_type(self) -> type[BaseModel]:
        """The pydantic model of its training config."""

    @abstractmethod
    def trainer_type(self) -> type[ResumableRun]:
        """The resumable training run of its supernets."""

    def train_config(self, raw: dict[str, Any], what: str | None = None) -> BaseModel:
        """A training config from plain data; ConfigError naming each bad field and `what`
        was read (default: the config's name)."""
        try:
            return self.train_config_type()(**raw)
        except ValidationError as err:
            message = format_validation_error(err, what or self.train_config_name)
            raise ConfigError(message) from None

    def load_train_config(self, path: str | os.PathLike, **overrides: Any) -> BaseModel:
        """A training config read from YAML, with the overrides that are not None."""
        raw = read_yaml_mapping(path, ConfigError, self.train_config_name)
        return self.train_config(
            merge_overrides(raw, overrides), f"{self.train_config_name} {path}"
        )

    def trainer(self, config: BaseModel, progress: bool = True) -> ResumableRun:
        return self.trainer_type()(config, progress=progress)

    def train(
        self,
        config: BaseModel,
        resume: bool = False,
        progress: bool = True,
        stop_after_steps: int | None = None,
    ) -> TrainResult:
        """Train (or resume) a run; writes its out_dir's checkpoint and trained file."""
        return self.trainer(config, progress).run(resume=resume, stop_after_steps=stop_after_steps)

    # ----- optional kits: what only some families can do ------------------------------------

    @property
    def predictors(self) -> QualityPredictors | None:
        """How quality predictors are fitted, measured for and loaded (None: quality is
        always measured)."""
        return None

    @property
    def finetuning(self) -> Finetuning | None:
        """How one subnet is fine-tuned and a supernet transferred to new data (None: not
        for this family)."""
        return None

    def require_predictors(self) -> QualityPredictors:
        if self.predictors is None:
            raise ConfigError(
                f"a {self.description} has no quality predictor: each subnet is measured"
            )
        return self.predictors

    def require_finetuning(self) -> Finetuning:
        if self.finetuning is None:
            raise ConfigError(f"fine-tuning is not available for a {self.description}")
        return self.finetuning

    def load_predictor(
        self, path: str | os.PathLike, opened: OpenedArtifact, expected_sha256: str | None = None
    ) -> Any:
        """The quality predictor at `path`, refused unless it was fitted on `opened` (and,
        with `expected_sha256`, unless it is that file)."""
        return self.require_predictors().load(path, opened, expected_sha256)

    def describe_quality(self, card: dict[str, Any]) -> str:
        """One line of the measured quality in an export's model card, for the CLI."""
        return ""

    def summary(self) -> dict[str, Any]:
        """The family as the doors show it (`GET /families`, the web page's form)."""
        return {
            "kind": self.kind,
            "description": self.description,
            "file_name": self.file_name,
            "quality_metrics": dict(self.quality_metrics),
            "predicts_quality": self.predicts_quality,
            "quantizes_int8": self.quantizes_int8,
        }


class QualityPredictors(ABC):
    """A family's quality predictors: measure archs with a trained supernet (resumable),
    fit a predictor on the measurements, load one (checked against its supernet)."""

    models: tuple[str, ...]  # the model kinds `fit` takes; the first is the default

    @abstractmethod
    def check_split(self, n: int, held_out: int) -> None:
        """ConfigError unless n archs with `held_out` of them kept aside can fit a model."""

    @abstractmethod
    def measure(self, trained: TrainedModel, n: int, **options: Any) -> list[Any]:
        """n random archs measured with the trained supernet (a record resumes them)."""

    @abstractmethod
    def fit(self, trained: TrainedModel, measurements: Sequence[Any], **options: Any) -> Any:
        """A predictor fitted on measurements of `trained`: `predict(archs)` gives the primary
        quality metric; where it kept held-out residuals (`has_bounds`),
        `bounds_of(predicted, coverage)` gives (low, high) around those predictions."""

    @abstractmethod
    def load(
        self,
        path: str | os.PathLike,
        checkpoint: str | os.PathLike | TrainedModel | OpenedArtifact | None = None,
        expected_sha256: str | None = None,
    ) -> Any:
        """A saved predictor; refused unless fitted on `checkpoint` (or not that file)."""

    @abstractmethod
    def fit_int8_drop(self, trained: TrainedModel, archs: Sequence[Arch], progress: bool) -> Any:
        """A model of the quality each arch loses when quantized to int8, from measuring
        `archs`."""


class Finetuning(ABC):
    """A family's fine-tuning of one subnet, and transfer of a supernet to new data."""

    @abstractmethod
    def settings(self, **options: Any) -> Any:
        """The fine-tuning settings from options (ConfigError for bad ones)."""

    @abstractmethod
    def finetune(
        self,
        trained: TrainedModel,
        arch: Arch,
        settings: Any,
        progress: bool,
        shipped_drop: float | None,
    ) -> Any:
        """Fine-tune the subnet of `arch` from its inherited weights."""

    @abstractmethod
    def save(
        self, path: Path, module: nn.Module, trained: TrainedModel, arch: Arch, report: dict
    ) -> str:
        """Write fine-tuned weights; returns their SHA-256."""

    @abstractmethod
    def load(self, path: str | os.PathLike, supernet_sha256: str, arch_id: str) -> dict:
        """Fine-tuned weights of `arch_id` from the supernet of `supernet_sha256`."""

    @abstractmethod
    def source_space(self, source: str | os.PathLike) -> str | dict[str, Any]:
        """The space of trained weights a supernet is transferred from: a preset's name,
        or the definition of a space that is not one (what `get_space` takes)."""

    @abstractmethod
    def transfer_phases(self, space: SearchSpace, epochs: int, lr: float) -> list[dict]:
        """The training phases of a transfer to new data."""


_FAMILIES: list[ModelFamily] = []


def register_family(family: ModelFamily) -> ModelFamily:
    if any(f.kind == family.kind or f.file_format == family.file_format for f in _FAMILIES):
        raise ValueError(f"model family {family.kind!r} is registered twice")
    _FAMILIES.append(family)
    return family


def families() -> list[ModelFamily]:
    """The registered families by rank (then by kind): the first is the doors' default."""
    return sorted(_FAMILIES, key=lambda f: (f.rank, f.kind))


def family_of_space(space: SearchSpace) -> ModelFamily:
    for family in _FAMILIES:
        if family.handles(space):
            return family
    kind = type(space).__name__
    raise TypeError(f"no supernet (no model family) is defined for spaces of type {kind}")


def family_of_kind(kind: str) -> ModelFamily:
    for family in _FAMILIES:
        if family.kind == kind:
            return family
    raise KeyError(f"unknown model family {kind!r}; known: {[f.kind for f in _FAMILIES]}")


def family_of_train_config(config: BaseModel) -> ModelFamily:
    """The family whose training config `config` is."""
    for family in _FAMILIES:
        if isinstance(config, family.train_config_type()):
            return family
    raise TypeError(f"no model family trains with a {type(config).__name__}")


def quality_metric_names() -> set[str]:
    """Every family's quality metrics: stored per network, without a device."""
    return {m for family in _FAMILIES for m in family.quality_metrics}


@dataclass
class OpenedArtifact:
    """An artifact with its family and space; the network is built on first use only
    (a predictor-only search never needs it) and then kept."""

    artifact: Artifact
    family: ModelFamily
    space: SearchSpace
    _trained: TrainedModel | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def sha256(self) -> str:
        return self.artifact.sha256

    def trained(self) -> TrainedModel:
        if self._trained is None:
            self._trained = self.family.load(self.artifact)
        return self._trained


def open_artifact(path: str | os.PathLike, expected_sha256: str | None = None) -> OpenedArtifact:
    """Read a trained file (or the one in a run folder) once, with its family and space.

    With `expected_sha256`, refuse a file that is not the one recorded (a search's launch)."""
    formats = tuple(f.file_format for f in _FAMILIES)
    try:
        artifact = read_artifact(path, formats)
    except CheckpointError as err:
        try:
            is_file = Path(path).is_file()
        except OSError:  # a name the file system cannot hold: the error says so already
            is_file = False
        if not is_file:  # missing, or a folder without a trained file
            raise
        raise CheckpointError(
            f"{err}: neither a trained supernet nor a trained GAN; train one with "
            "`nas supernet train` or `nas gan train`"
        ) from None
    artifact.check_sha256(expected_sha256, "trained file")
    family = next(f for f in _FAMILIES if f.file_format == artifact.format)
    return OpenedArtifact(artifact, family, saved_space(artifact.data))


def build(space: SearchSpace | str | dict) -> nn.Module:
    """The elastic supernet of a space: `net.set_active(arch)`, `net(x)`, `net.extract(arch)`."""
    space = get_space(space)
    return family_of_space(space).build(space)
