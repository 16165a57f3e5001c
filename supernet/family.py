"""Model families: how each kind of trained file is loaded, measured, exported and shown.

The service core (nas/) never asks which kind of network it holds. A family plugs in
through `ModelFamily`: the file format it reads, its quality metrics, its supernet builder,
and `load`, which turns an `Artifact` already read into a `TrainedModel`. That trained model
measures quality, prepares an exportable module and renders samples. Two families exist:
the MBConv classifiers (supernet.mbconv.family) and the Anycost GAN generators
(supernet.anycost.family).

    opened = open_artifact("runs/mnist-supernet")   # one read and one hash of the file
    opened.family.quality_metrics                    # {"top1": "maximize"}
    trained = opened.trained()                       # the network, built once per process
    trained.measure_quality(archs)                   # [{"top1": 0.97}, ...]
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from supernet.data import Dataset, DatasetConfig, load_dataset
from supernet.errors import CheckpointError, ConfigError
from supernet.io import Artifact, read_artifact
from supernet.space import Arch, SearchSpace, get_space

Metrics = dict[str, float]


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


class TrainedModel(ABC):
    """A trained supernet of some family, loaded from one `Artifact`."""

    artifact: Artifact
    space: SearchSpace
    dataset_config: DatasetConfig  # the data it was trained on, measured on

    def dataset(self) -> Dataset:
        return load_dataset(self.dataset_config)

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def sha256(self) -> str:
        return self.artifact.sha256

    @abstractmethod
    def measure_quality(
        self, archs: Sequence[Arch], metrics: Collection[str] = ()
    ) -> list[Metrics]:
        """The family's quality metrics of each arch, measured with the trained network."""

    @abstractmethod
    def exportable(
        self, arch: Arch, searched: Metrics, weights: dict[str, Any] | None = None
    ) -> ExportableModel:
        """The static subnet of `arch`, measured afresh, ready to be written; `searched`
        holds the quality values the search recorded (predicted or measured); `weights`, a
        fine-tuned weights file's data (`nas finetune`), replaces the inherited weights."""

    def render_samples(self, path: Path, archs: Sequence[Arch]) -> Path | None:
        """A picture of what the subnets produce, where the family has one (generators)."""
        return None


class ModelFamily(ABC):
    kind: str  # the name recorded in model cards: "classifier", "gan"
    description: str  # for messages: "classifier supernet"
    file_format: str  # the "format" field of its trained file
    file_name: str  # the trained file in a run folder
    quality_metrics: dict[str, str]  # metric -> "maximize" | "minimize", first is primary
    # Whether an accuracy predictor can stand in for measuring (classifiers); otherwise
    # every candidate is measured with the trained network.
    predicts_quality: bool = False
    # The predictor file a run folder given as `predictor` stands for (None: no predictor).
    predictor_file_name: str | None = None
    # Whether its subnets can ship as int8 files: it has labelled images to calibrate the
    # quantization on and to measure the int8 file's quality with (classifiers).
    quantizes_int8: bool = False

    @abstractmethod
    def handles(self, space: SearchSpace) -> bool:
        """Whether `space` is one of this family's spaces."""

    @abstractmethod
    def build(self, space: SearchSpace) -> nn.Module:
        """The untrained elastic supernet of a space."""

    @abstractmethod
    def load(self, artifact: Artifact) -> TrainedModel:
        """The trained model held by an artifact of this family's format."""

    def load_predictor(
        self, path: str | os.PathLike, opened: OpenedArtifact, expected_sha256: str | None = None
    ) -> Any:
        """The quality predictor at `path`, refused unless it was fitted on `opened` (and,
        with `expected_sha256`, unless it is that file). Only where `predicts_quality`."""
        raise ConfigError(f"a {self.description} has no quality predictor")

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


_FAMILIES: list[ModelFamily] = []


def register_family(family: ModelFamily) -> ModelFamily:
    if any(f.kind == family.kind or f.file_format == family.file_format for f in _FAMILIES):
        raise ValueError(f"model family {family.kind!r} is registered twice")
    _FAMILIES.append(family)
    return family


def families() -> list[ModelFamily]:
    return list(_FAMILIES)


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
    return OpenedArtifact(artifact, family, get_space(artifact.data["space"]))


def build(space: SearchSpace | str) -> nn.Module:
    """The elastic supernet of a space: `net.set_active(arch)`, `net(x)`, `net.extract(arch)`."""
    space = get_space(space) if isinstance(space, str) else space
    return family_of_space(space).build(space)
